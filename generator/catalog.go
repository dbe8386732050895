package generator

import (
	"strconv"
	"strings"

	"github.com/eventgen/eventgen/runtime/event"
)

// The catalog is the flow of a schema's events as a graph: the generated
// Producer, one node per topic, the pipelines, the generated Consumer and
// the dead-letter topics. catalog decides every node id and label from the
// IR; mermaid only prints them, so the diagram in the docs is a pure
// function of the IR and byte-identical run to run.

// Catalog is the graph of one schema.
type Catalog struct {
	Nodes []CatalogNode
	Edges []CatalogEdge
}

// NodeShape is how a catalog node is drawn.
type NodeShape int

const (
	ShapeBox      NodeShape = iota + 1 // the Producer and the Consumer
	ShapeTopic                         // a Kafka topic (a cylinder)
	ShapePipeline                      // a pipeline (a subroutine box)
)

// CatalogNode is one node: ID is a valid Mermaid id (letters, digits, _),
// Lines the label's lines, as plain text.
type CatalogNode struct {
	ID    string
	Lines []string
	Shape NodeShape
}

// CatalogEdge is one arrow; a Dashed one carries dead letters.
type CatalogEdge struct {
	From, To string
	Lines    []string
	Dashed   bool
}

// deadLetterSuffix names a topic's dead-letter topic, as
// runtime/kafka.DeadLetterTopic does.
const deadLetterSuffix = ".dlq"

// catalogTopic is a topic and its events, in schema order.
type catalogTopic struct {
	id     string
	name   string
	events []*Event
}

func catalog(s *Schema) *Catalog {
	c := &Catalog{}
	var topics []*catalogTopic
	byName := map[string]*catalogTopic{}
	for _, ev := range s.Events {
		t := byName[ev.Topic]
		if t == nil {
			// Ids are numbered in order of first appearance: topics may
			// hold any of . _ -, which ids may not.
			t = &catalogTopic{id: "topic" + strconv.Itoa(len(topics)+1), name: ev.Topic}
			byName[ev.Topic] = t
			topics = append(topics, t)
		}
		t.events = append(t.events, ev)
	}

	const producer, consumer = "producer", "consumer"
	pkgLine := "package " + s.Package
	c.Nodes = append(c.Nodes, CatalogNode{ID: producer, Lines: []string{s.Names.Producer, pkgLine}, Shape: ShapeBox})
	for _, t := range topics {
		// One topic, one guarantee (EG023).
		c.Nodes = append(c.Nodes, CatalogNode{ID: t.id, Lines: []string{t.name, t.events[0].Guarantee.String()}, Shape: ShapeTopic})
	}
	for i, p := range s.Pipelines {
		c.Nodes = append(c.Nodes, CatalogNode{ID: pipelineID(i), Lines: []string{p.Name, p.Guarantee.String() + " pipeline"}, Shape: ShapePipeline})
	}
	hasConsumer := len(s.Direct) > 0
	if hasConsumer {
		c.Nodes = append(c.Nodes, CatalogNode{ID: consumer, Lines: []string{s.Names.Consumer, pkgLine}, Shape: ShapeBox})
	}

	// The Producer sends every event: exactly-once ones through Tx.
	for _, t := range topics {
		var lines []string
		for _, ev := range t.events {
			line := ev.Name
			if ev.Group != nil && ev.Group.Transactional {
				line += " · in " + s.Names.Tx
			}
			if ev.Outbox {
				line += " · outbox"
			}
			if ev.Deprecated {
				line += " · deprecated"
			}
			lines = append(lines, line)
		}
		c.Edges = append(c.Edges, CatalogEdge{From: producer, To: t.id, Lines: lines})
	}
	// The Consumer handles the events of the direct guarantees; an
	// at-least-once record that exhausts its retries is dead-lettered.
	deadLetters := map[string]bool{}
	addDeadLetter := func(from string, t *catalogTopic) {
		id := t.id + "_dlq"
		if !deadLetters[id] {
			deadLetters[id] = true
			c.Nodes = append(c.Nodes, CatalogNode{ID: id, Lines: []string{t.name + deadLetterSuffix, "dead letters"}, Shape: ShapeTopic})
		}
		c.Edges = append(c.Edges, CatalogEdge{From: from, To: id, Lines: []string{"after retries"}, Dashed: true})
	}
	for _, t := range topics {
		g := t.events[0].Guarantee
		if !hasConsumer || (g != event.AtMostOnce && g != event.AtLeastOnce) {
			continue
		}
		c.Edges = append(c.Edges, CatalogEdge{From: t.id, To: consumer, Lines: consumedLines(t.events)})
		if g == event.AtLeastOnce {
			addDeadLetter(consumer, t)
		}
	}
	// A pipeline reads one event and writes its outputs (in a transaction
	// when it is exactly-once), dead letters included.
	for i, p := range s.Pipelines {
		in := byName[p.Consumes.Topic]
		c.Edges = append(c.Edges, CatalogEdge{From: in.id, To: pipelineID(i), Lines: consumedLines([]*Event{p.Consumes})})
		var outs []*catalogTopic
		outEvents := map[string][]string{}
		for _, ev := range p.Produces {
			out := byName[ev.Topic]
			if outEvents[out.id] == nil {
				outs = append(outs, out)
			}
			outEvents[out.id] = append(outEvents[out.id], ev.Name)
		}
		for _, out := range outs {
			c.Edges = append(c.Edges, CatalogEdge{From: pipelineID(i), To: out.id, Lines: outEvents[out.id]})
		}
		addDeadLetter(pipelineID(i), in)
	}
	return c
}

func pipelineID(i int) string { return "pipeline" + strconv.Itoa(i+1) }

// consumedLines label the edge into a consumer: each event with its dedup,
// which the consuming side applies.
func consumedLines(events []*Event) []string {
	lines := make([]string, len(events))
	for i, ev := range events {
		lines[i] = ev.Name
		switch {
		case ev.Guarantee == event.AtMostOnce:
		case ev.Dedup == event.DedupNone:
			lines[i] += " · no dedup"
		default:
			lines[i] += " · dedup " + ev.Dedup.String() + " " + formatDuration(ev.DedupTTL)
		}
	}
	return lines
}

// Mermaid returns the catalog as a Mermaid flowchart, left to right.
func (c *Catalog) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, n := range c.Nodes {
		open, close := `["`, `"]`
		switch n.Shape {
		case ShapeTopic:
			open, close = `[("`, `")]`
		case ShapePipeline:
			open, close = `[["`, `"]]`
		}
		b.WriteString("  " + n.ID + open + mermaidLabel(n.Lines) + close + "\n")
	}
	for _, e := range c.Edges {
		arrow := "-->"
		if e.Dashed {
			arrow = "-.->"
		}
		b.WriteString("  " + e.From + " " + arrow + `|"` + mermaidLabel(e.Lines) + `"|` + " " + e.To + "\n")
	}
	return b.String()
}

// mermaidLabel joins lines with line breaks inside a quoted label. Names
// and topics cannot hold these characters today, but a label must never
// end its quotes, start an entity or close the Markdown fence.
func mermaidLabel(lines []string) string {
	esc := strings.NewReplacer(`#`, "#35;", `"`, "#quot;", "<", "#lt;", ">", "#gt;", "`", "#96;", "\n", " ")
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = esc.Replace(l)
	}
	return strings.Join(out, "<br/>")
}
