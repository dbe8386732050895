package eventgen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The import rules of docs/architecture.md. A package that breaks one fails
// here with the import chain's end points named, so the rule cannot drift
// from the document silently.

const module = "github.com/eventgen/eventgen"

// clients are the module paths of the network clients the runtime wraps;
// the generator and the CLI must link none of them.
var clients = []string{
	"github.com/IBM/sarama",
	"github.com/twmb/franz-go",
	"github.com/jackc/pgx",
	"github.com/redis/go-redis",
	module + "/runtime/kafka",
}

type listedPackage struct {
	ImportPath string
	Name       string
	Standard   bool
	Deps       []string
	Imports    []string
}

// listPackages runs `go list -deps -json` on the patterns: the packages and
// everything they import, transitively.
func listPackages(t *testing.T, patterns ...string) map[string]listedPackage {
	t.Helper()
	args := append([]string{"list", "-deps", "-json"}, patterns...)
	out, err := exec.CommandContext(t.Context(), "go", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listedPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func within(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestEventImportsOnlyTheStandardLibrary(t *testing.T) {
	pkgs := listPackages(t, "./runtime/event")
	for _, dep := range pkgs[module+"/runtime/event"].Deps {
		if !pkgs[dep].Standard {
			t.Errorf("runtime/event depends on %s; it may import only the standard library", dep)
		}
	}
}

func TestTemplatesImportOnlyTheStandardLibrary(t *testing.T) {
	pkgs := listPackages(t, "./templates")
	for _, dep := range pkgs[module+"/templates"].Deps {
		if !pkgs[dep].Standard {
			t.Errorf("templates depends on %s; it may import only the standard library", dep)
		}
	}
}

// TestOutboxImports checks runtime/outbox's direct imports: pgx, the
// idempotent producer of runtime/kafka, runtime/event, templates (the
// DDL it shares with the generator) and runtime/internal/pgddl (which
// applies it).
func TestOutboxImports(t *testing.T) {
	pkgs := listPackages(t, "./runtime/outbox")
	for _, imp := range pkgs[module+"/runtime/outbox"].Imports {
		switch {
		case pkgs[imp].Standard, within(imp, "github.com/jackc/pgx/v5"),
			imp == module+"/runtime/kafka", imp == module+"/runtime/event", imp == module+"/templates",
			imp == module+"/runtime/internal/pgddl":
		default:
			t.Errorf("runtime/outbox imports %s; it may import pgx, runtime/kafka, runtime/event, templates, runtime/internal/pgddl and the standard library", imp)
		}
	}
}

func TestGeneratorLinksNoClient(t *testing.T) {
	pkgs := listPackages(t, "./generator")
	for _, dep := range pkgs[module+"/generator"].Deps {
		for _, c := range clients {
			if within(dep, c) {
				t.Errorf("generator depends on %s; the generator must link no Kafka, PostgreSQL or Redis client", dep)
			}
		}
	}
}

// TestCLILinksClientsOnlyForTheRelay: the CLI links pgx and sarama for
// `eventgen relay` (runtime/outbox), nothing else: no Redis client, no
// kfake, and the generator's packages stay client-free (above).
func TestCLILinksClientsOnlyForTheRelay(t *testing.T) {
	pkgs := listPackages(t, "./cmd/eventgen")
	cli := pkgs[module+"/cmd/eventgen"]
	for _, dep := range cli.Deps {
		if within(dep, "github.com/redis/go-redis") || within(dep, "github.com/twmb/franz-go") {
			t.Errorf("cmd/eventgen depends on %s; only the relay's clients (pgx, sarama) may be linked", dep)
		}
	}
	for _, imp := range cli.Imports {
		for _, c := range clients {
			if within(imp, c) && imp != module+"/runtime/kafka" && !within(imp, "github.com/jackc/pgx/v5") {
				t.Errorf("cmd/eventgen imports %s; clients come in through runtime/outbox for the relay command", imp)
			}
		}
	}
}

func TestRuntimeImportsNeitherGeneratorNorCLI(t *testing.T) {
	pkgs := listPackages(t, "./runtime/...")
	for path, p := range pkgs {
		if !within(path, module+"/runtime") {
			continue
		}
		for _, dep := range p.Deps {
			if within(dep, module+"/generator") || within(dep, module+"/cmd") {
				t.Errorf("%s depends on %s; nothing under runtime/ may import the generator or the CLI", path, dep)
			}
		}
	}
}

func TestKafkatestDoesNotImportKafka(t *testing.T) {
	pkgs := listPackages(t, "./runtime/kafka/kafkatest")
	for _, dep := range pkgs[module+"/runtime/kafka/kafkatest"].Deps {
		if dep == module+"/runtime/kafka" {
			t.Errorf("runtime/kafka/kafkatest depends on runtime/kafka; the kafka package's internal tests import kafkatest, so that is a cycle")
		}
	}
}

func TestNoPackageIsCalledRuntime(t *testing.T) {
	for path, p := range listPackages(t, "./...") {
		if within(path, module) && p.Name == "runtime" {
			t.Errorf("%s is package runtime, which shadows the standard library's", path)
		}
	}
}

// allowedDeps checks that pkg depends, beyond the standard library and the
// listed module paths (and its own packages), on nothing else.
func allowedDeps(t *testing.T, pkgs map[string]listedPackage, pkg string, allowed ...string) {
	t.Helper()
	p, ok := pkgs[pkg]
	if !ok {
		t.Fatalf("go list did not list %s", pkg)
	}
	for _, dep := range p.Deps {
		if pkgs[dep].Standard || within(dep, pkg) {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || within(dep, a)
		}
		if !ok {
			t.Errorf("%s depends on %s; docs/architecture.md allows only the standard library and %v", pkg, dep, allowed)
		}
	}
}

// pgxDeps and redisDeps are what the PostgreSQL and Redis clients pull in.
var (
	pgxDeps   = []string{"github.com/jackc/pgx/v5", "github.com/jackc/pgpassfile", "github.com/jackc/pgservicefile", "github.com/jackc/puddle/v2", "golang.org/x/sync", "golang.org/x/text"}
	redisDeps = []string{"github.com/redis/go-redis/v9", "github.com/cespare/xxhash/v2", "github.com/dgryski/go-rendezvous", "go.uber.org/atomic", "golang.org/x/sys"}
)

func TestDedupPackagesImportOnlyTheirClient(t *testing.T) {
	pkgs := listPackages(t, "./runtime/dedup/...", "./templates", "./runtime/internal/pgddl")
	allowedDeps(t, pkgs, module+"/templates")
	allowedDeps(t, pkgs, module+"/runtime/internal/pgddl", append([]string{module + "/templates"}, pgxDeps...)...)
	allowedDeps(t, pkgs, module+"/runtime/dedup/deduptest", module+"/runtime/dedup")
	allowedDeps(t, pkgs, module+"/runtime/dedup/pgdedup", append([]string{module + "/runtime/dedup", module + "/templates", module + "/runtime/internal/pgddl"}, pgxDeps...)...)
	allowedDeps(t, pkgs, module+"/runtime/dedup/redisdedup", append([]string{module + "/runtime/dedup"}, redisDeps...)...)
	// runtime/dedup itself: the standard library only (its subpackages
	// are checked above; within() would let them through).
	for _, dep := range pkgs[module+"/runtime/dedup"].Deps {
		if !pkgs[dep].Standard {
			t.Errorf("runtime/dedup depends on %s; it may import only the standard library", dep)
		}
	}
}

func TestKafkaLinksNoDatabaseClient(t *testing.T) {
	pkgs := listPackages(t, "./runtime/kafka")
	for _, dep := range pkgs[module+"/runtime/kafka"].Deps {
		for _, c := range []string{"github.com/jackc/pgx", "github.com/redis/go-redis", module + "/runtime/dedup/pgdedup", module + "/runtime/dedup/redisdedup"} {
			if within(dep, c) {
				t.Errorf("runtime/kafka depends on %s; it must link no PostgreSQL or Redis client (stores come in through runtime/dedup's interfaces)", dep)
			}
		}
	}
}
