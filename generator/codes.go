package generator

import (
	"maps"
	"slices"
	"strings"
)

// Code is a stable diagnostic code, such as EG012. Codes are never reused
// for a different rule; docs/schema.md lists each with its rule.
type Code string

// The diagnostic codes. Each rule's summary is in codeSummaries, which
// docs/schema.md repeats and a test keeps in step.
const (
	CodeSyntax              Code = "EG001"
	CodeUnknownKey          Code = "EG002"
	CodeWrongKind           Code = "EG003"
	CodeMissingKey          Code = "EG004"
	CodeVersion             Code = "EG005"
	CodePackageName         Code = "EG006"
	CodeTypeName            Code = "EG007"
	CodeFieldName           Code = "EG008"
	CodeNameCollision       Code = "EG009"
	CodeEnumValue           Code = "EG010"
	CodeTopic               Code = "EG011"
	CodeTopicGuarantee      Code = "EG012"
	CodeKeyField            Code = "EG013"
	CodeKeyOptional         Code = "EG014"
	CodeKeyType             Code = "EG015"
	CodeKeyUnstable         Code = "EG016"
	CodeAtMostOnceOutbox    Code = "EG017"
	CodeAtMostOnceDedup     Code = "EG018"
	CodeDedupRequired       Code = "EG019"
	CodeDedupSettings       Code = "EG020"
	CodeExactlyOnceIdemKey  Code = "EG021"
	CodeExactlyOnceRedis    Code = "EG022"
	CodeDuration            Code = "EG023"
	CodeTTLBelowRetention   Code = "EG024"
	CodePipelineEvent       Code = "EG025"
	CodePipelineGuarantee   Code = "EG026"
	CodeRecursiveType       Code = "EG027"
	CodeUnknownType         Code = "EG028"
	CodeBadValue            Code = "EG029"
	CodeDedupIdemKey        Code = "EG030"
	CodeNoEvents            Code = "EG031"
	CodePipelineUnsupported Code = "EG032"
	CodeIgnore              Code = "EG033"
	CodeEventVersion        Code = "EG034"
	CodeWireKey             Code = "EG035"
	CodeExactlyOnceOutbox   Code = "EG036"
)

// codeSummaries says, for each code, the rule it enforces.
var codeSummaries = map[Code]string{
	CodeSyntax:              "The file is not valid YAML (the parser's position is kept).",
	CodeUnknownKey:          "A key that the schema language does not define; the message suggests the closest known key.",
	CodeWrongKind:           "A value of the wrong YAML kind: a mapping, list or scalar where another was expected.",
	CodeMissingKey:          "A required key is missing (`version`, `package`, an event's `topic`, `guarantee` or `fields`, a field's `type`, ...).",
	CodeVersion:             "`version` must be 1.",
	CodePackageName:         "`package` must be a valid Go package name: lower-case letters and digits, not a Go keyword or predeclared identifier.",
	CodeTypeName:            "Event, type and pipeline names must be UpperCamelCase ASCII identifiers.",
	CodeFieldName:           "Field names must be lower_snake_case ASCII.",
	CodeNameCollision:       "Two names become the same Go identifier (after case conversion, or with an identifier the generator declares).",
	CodeEnumValue:           "Enum values must be non-empty, start with a letter, use letters, digits, `_`, `-` or `.`, and be unique.",
	CodeTopic:               "Topics follow Kafka's rules: `[a-zA-Z0-9._-]`, at most 245 characters (249 less room for the `.dlq` dead-letter suffix), not `.` or `..`.",
	CodeTopicGuarantee:      "Two events with different guarantees share one topic: one topic, one semantic.",
	CodeKeyField:            "`key` or an `idempotency_key` field does not exist in the event.",
	CodeKeyOptional:         "`key` or an `idempotency_key` field is optional.",
	CodeKeyType:             "`key` or an `idempotency_key` field is not a scalar key type (string, uuid, int32, int64 or an enum).",
	CodeKeyUnstable:         "An `idempotency_key` or `key` field is a timestamp, float64, duration, decimal or bytes: clocks skew and floats round.",
	CodeAtMostOnceOutbox:    "`outbox: true` on an at-most-once event: the outbox exists to never lose an event.",
	CodeAtMostOnceDedup:     "(warning) A dedup store on an at-most-once event: nothing is ever redelivered.",
	CodeDedupRequired:       "An at-least-once event without `dedup`.",
	CodeDedupSettings:       "`dedup` is incomplete: `postgres` and `redis` need a `ttl`; `none` needs a `reason`.",
	CodeExactlyOnceIdemKey:  "An exactly-once event without `idempotency_key`.",
	CodeExactlyOnceRedis:    "`dedup.store: redis` on an exactly-once event: a Redis marker lives outside the handler's transaction.",
	CodeDuration:            "A duration (`ttl`, `retention`) is not Go syntax such as `168h`, or is not positive.",
	CodeTTLBelowRetention:   "(warning) `dedup.ttl` is shorter than `retention`: redeliveries older than the ttl pass the dedup store.",
	CodePipelineEvent:       "A pipeline's `consumes` or `produces` names an event that is not declared.",
	CodePipelineGuarantee:   "A pipeline's guarantee is stronger than the event it consumes or an event it produces.",
	CodeRecursiveType:       "A named type contains itself, directly or through other types.",
	CodeUnknownType:         "A field type is neither built in nor declared in `types`.",
	CodeBadValue:            "A value outside its set (a guarantee, a dedup store) or of the wrong type (a boolean that is not true/false).",
	CodeDedupIdemKey:        "A `postgres` or `redis` dedup store on an event without `idempotency_key`: the store needs to know what identifies an event.",
	CodeNoEvents:            "The schema declares no events.",
	CodePipelineUnsupported: "A pipeline whose guarantee is not exactly-once: version 1 generates exactly-once pipelines only.",
	CodeIgnore:              "An event's `ignore` entry names an unknown code or an error (errors cannot be silenced: the generated code would be wrong or unsafe), or gives no reason.",
	CodeEventVersion:        "An event's `version` is not a positive integer.",
	CodeExactlyOnceOutbox:   "`outbox: true` on an exactly-once event: the relay publishes at least once, outside Kafka transactions.",
	CodeWireKey:             "A field's `json` key is empty or has a character that is not printable, or two fields of one event or type read the same JSON key (a `json` or a field name).",
}

// warningCodes are the codes reported as warnings; their summaries start
// with "(warning)", and a test keeps the two in step. An event's `ignore`
// can silence these, and only these of the EG codes.
var warningCodes = map[Code]bool{
	CodeAtMostOnceDedup:   true,
	CodeTTLBelowRetention: true,
}

// isBreakingCode reports whether c is one of the breaking-change codes
// (EB001, ...) that `eventgen breaking` reports: `ignore` accepts these,
// and breaking applies them. A code of that form that no rule has is
// unknown, like a misspelt one.
func isBreakingCode(c Code) bool {
	_, ok := breakingRules[c]
	return ok
}

// hasBreakingForm reports whether c is written like a breaking-change
// code, EBnnn, known or not.
func hasBreakingForm(c Code) bool {
	s := string(c)
	if len(s) != 5 || s[:2] != "EB" {
		return false
	}
	for i := 2; i < 5; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// breakingCodeRange is how messages name the breaking-change codes,
// e.g. "EB001 to EB019".
func breakingCodeRange() string {
	codes := slices.Sorted(maps.Keys(breakingRules))
	return string(codes[0]) + " to " + string(codes[len(codes)-1])
}

// silenceable reports whether an event's `ignore` may name c.
func silenceable(c Code) bool { return warningCodes[c] || isBreakingCode(c) }

// codeTitle is the short name of a rule, for the docs: its summary up to
// the first colon, e.g. "`dedup.ttl` is shorter than `retention`"; "" for a
// code without a summary here.
func codeTitle(c Code) string {
	s := codeSummaries[c]
	if r, ok := breakingRules[c]; ok {
		s = r.summary
	}
	s = strings.TrimPrefix(s, "(warning) ")
	if title, _, ok := strings.Cut(s, ": "); ok {
		return title
	}
	return strings.TrimSuffix(s, ".")
}
