package generator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/eventgen/eventgen/runtime/event"
)

// Breaking-change detection compares two compiled schemas, the one a
// change started from (old) and the one it ends with (cur), event by
// event. Each rule has a code of its own series, EBnnn, and the
// compatibility modes in which it breaks; docs/breaking.md lists them.

// Mode is a compatibility mode, named as Confluent Schema Registry names
// them. Backward: consumers built from the new schema read records written
// with the old one. Forward: consumers built from the old schema read
// records written with the new one. Full: both.
type Mode int

const (
	Backward Mode = 1 << iota
	Forward
	Full = Backward | Forward
)

// ParseMode reads a mode's name: backward, forward or full.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "backward":
		return Backward, nil
	case "forward":
		return Forward, nil
	case "full":
		return Full, nil
	}
	return 0, fmt.Errorf("unknown mode %q: want backward, forward or full", s)
}

// modesDoc lists the modes a rule is reported in, as docs/breaking.md
// spells them: a rule that breaks backward also breaks full.
func (m Mode) modesDoc() string {
	switch m {
	case Backward:
		return "backward, full"
	case Forward:
		return "forward, full"
	}
	return "backward, forward, full"
}

func (m Mode) String() string {
	switch m {
	case Backward:
		return "backward"
	case Forward:
		return "forward"
	case Full:
		return "full"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// The breaking-change codes. Their rules, and the modes each breaks in,
// are in breakingRules, which docs/breaking.md repeats and a test keeps in
// step.
const (
	CodeFieldAdded        Code = "EB001"
	CodeFieldRemoved      Code = "EB002"
	CodeFieldType         Code = "EB003"
	CodeFieldRequired     Code = "EB004"
	CodeFieldOptional     Code = "EB005"
	CodeEnumValueRemoved  Code = "EB006"
	CodeEnumValueAdded    Code = "EB007"
	CodeEventRemoved      Code = "EB008"
	CodeTopicChanged      Code = "EB009"
	CodeKeyChanged        Code = "EB010"
	CodeIdemKeyChanged    Code = "EB011"
	CodeGuaranteeWeakened Code = "EB012"
	CodeDedupTTLShortened Code = "EB013"
	CodeOutboxOff         Code = "EB014"
	CodeDedupStoreChanged Code = "EB015"
	CodeVersionMoved      Code = "EB016"
	CodeVersionLowered    Code = "EB017"
	CodeCETypeChanged     Code = "EB018"
	CodeWireKeyChanged    Code = "EB019"
)

// breakingRule is one rule: the modes it breaks in; wire rules are those a
// move to a new event version allows.
type breakingRule struct {
	modes   Mode
	wire    bool
	summary string
}

// every mode: rules about delivery, not about reading one record.
const allModes = Full

var breakingRules = map[Code]breakingRule{
	CodeFieldAdded:        {Backward, true, "A required field was added: records written before it lack it, and new consumers reject them."},
	CodeFieldRemoved:      {Forward, true, "A required field was removed: old consumers reject new records, which lack it."},
	CodeFieldType:         {Full, true, "A field's type changed: neither side reads the other's value."},
	CodeFieldRequired:     {Backward, true, "An optional field became required: old records may lack it, and new consumers reject them."},
	CodeFieldOptional:     {Forward, true, "A required field became optional: new records may lack it, and old consumers reject them."},
	CodeEnumValueRemoved:  {Backward, true, "An enum value was removed: old records may carry it, and new consumers reject it."},
	CodeEnumValueAdded:    {Forward, true, "An enum value was added: new records may carry it, and old consumers reject it."},
	CodeEventRemoved:      {allModes, false, "An event was removed or renamed: its CloudEvents type is no longer produced, and its consumers have nothing to read."},
	CodeTopicChanged:      {allModes, true, "An event's topic changed: consumers of the old topic stop receiving it, and per-key order does not span two topics."},
	CodeKeyChanged:        {allModes, false, "An event's key changed: records of one entity move to another partition, so per-key order breaks across the deploy."},
	CodeIdemKeyChanged:    {allModes, false, "An event's idempotency key changed: redeliveries of old records are not recognised as duplicates."},
	CodeGuaranteeWeakened: {allModes, false, "An event's guarantee was weakened: consumers relying on it lose or repeat effects."},
	CodeDedupTTLShortened: {allModes, false, "`dedup.ttl` was shortened below `retention`: redeliveries within retention pass dedup."},
	CodeOutboxOff:         {allModes, false, "`outbox` was turned off: an event can be lost between the database commit and the send."},
	CodeDedupStoreChanged: {allModes, false, "The dedup store changed: what it remembered is lost across the deploy, so redeliveries of old records pass dedup."},
	CodeVersionMoved:      {allModes, false, "(warning) An event moved to a new version: its wire-shape changes (and a new topic) are allowed and listed."},
	CodeVersionLowered:    {allModes, false, "An event's version was lowered: its CloudEvents type goes back to one consumers have moved on from."},
	CodeCETypeChanged:     {allModes, true, "An event's CloudEvents type changed with its version unchanged (the package was renamed): consumers route a shared topic's records by type and drop the others."},
	CodeWireKeyChanged:    {Full, true, "A field's JSON key changed (its `json`, or its name with no `json`), the field's name kept: neither side reads the other's key, so a required field is rejected and an optional one silently lost."},
}

// Breaking reports the changes from old to cur that break consumers in the
// given mode. old is nil when the schema did not exist before: nothing
// breaks. Findings point at the new position, with the old one as related
// (for something removed: at the old position). A finding on an event that
// ignores its code is left out.
func Breaking(old, cur *Schema, mode Mode) Diagnostics {
	var diags Diagnostics
	if old == nil || cur == nil {
		return diags
	}
	curEvents := map[string]*Event{}
	for _, ev := range cur.Events {
		curEvents[ev.Name] = ev
	}
	oldEvents := map[string]bool{}
	for _, o := range old.Events {
		oldEvents[o.Name] = true
	}
	for _, o := range old.Events {
		n := curEvents[o.Name]
		if n == nil {
			b := &breakCheck{mode: mode, diags: &diags}
			b.removedEvent(o, cur, oldEvents)
			continue
		}
		b := &breakCheck{mode: mode, diags: &diags, old: o, cur: n, seen: map[[2]*NamedType]bool{}}
		b.event()
	}
	diags.Sort()
	return diags
}

// breakCheck compares one event of the old schema with the same event of
// the new one.
type breakCheck struct {
	mode     Mode
	diags    *Diagnostics
	old, cur *Event
	// allowed: the event moved to a higher version, so wire changes are
	// reported as allowed; moved collects them for the summary.
	allowed bool
	moved   int
	// seen are the pairs of record types compared already for this event.
	seen map[[2]*NamedType]bool
}

// report adds a finding if its rule breaks in the mode and the event does
// not ignore it.
func (b *breakCheck) report(code Code, pos Pos, msg string, related ...Related) {
	rule := breakingRules[code]
	if rule.modes&b.mode == 0 {
		return
	}
	if b.cur != nil {
		if _, ok := b.cur.Ignore[code]; ok {
			return
		}
	}
	sev := Error
	if b.allowed && rule.wire {
		sev = Warning
		b.moved++
		msg += fmt.Sprintf(" (allowed: %s moved to v%d)", b.cur.Name, b.cur.Version)
	}
	*b.diags = append(*b.diags, Diagnostic{Pos: pos, Severity: sev, Code: code, Message: msg, Related: related})
}

func orPos(p, fallback Pos) Pos {
	if p.Line == 0 {
		return fallback
	}
	return p
}

func note(pos Pos, format string, args ...any) Related {
	return Related{Pos: pos, Message: fmt.Sprintf(format, args...)}
}

// removedEvent reports an event of the old schema that the new one lacks,
// naming a new event with the same fields and topic as a likely rename.
func (b *breakCheck) removedEvent(o *Event, cur *Schema, oldEvents map[string]bool) {
	msg := fmt.Sprintf("event %s was removed: its CloudEvents type %s is no longer produced, and its consumers have nothing to read", o.Name, o.CEType)
	var related []Related
	for _, n := range cur.Events {
		if oldEvents[n.Name] {
			continue
		}
		if n.Topic == o.Topic && n.Fingerprint == eventFingerprintAs(o, n.Name) {
			msg = fmt.Sprintf("event %s was removed (renamed to %s?): a rename changes the CloudEvents type from %s to %s, which consumers of %s do not handle", o.Name, n.Name, o.CEType, n.CEType, o.Name)
			related = append(related, note(n.Pos, "event %s has the same fields and topic", n.Name))
			break
		}
	}
	b.report(CodeEventRemoved, o.Pos, msg, related...)
}

// eventFingerprintAs is ev's fingerprint had it been named name.
func eventFingerprintAs(ev *Event, name string) string {
	var sb strings.Builder
	sb.WriteString(name)
	fieldsShape(&sb, ev.Fields)
	return hash(sb.String())
}

func (b *breakCheck) event() {
	o, n := b.old, b.cur
	name := n.Name
	switch {
	case n.Version > o.Version:
		b.allowed = true
	case n.Version < o.Version:
		b.report(CodeVersionLowered, orPos(n.At.Version, n.Pos),
			fmt.Sprintf("event %s went back from v%d to v%d: its CloudEvents type becomes %s again, which consumers have moved on from", name, o.Version, n.Version, n.CEType),
			note(orPos(o.At.Version, o.Pos), "it was v%d", o.Version))
	}
	if o.Version == n.Version && o.CEType != n.CEType {
		b.report(CodeCETypeChanged, n.Pos,
			fmt.Sprintf("event %s's CloudEvents type changed from %s to %s (the package was renamed): a consumer of a topic that carries several events routes records by type and drops those of a type it does not know", name, o.CEType, n.CEType),
			note(o.Pos, "the old type %s", o.CEType))
	}
	if o.Topic != n.Topic {
		b.report(CodeTopicChanged, orPos(n.At.Topic, n.Pos),
			fmt.Sprintf("event %s moved from topic %q to %q: consumers of %q stop receiving it, and per-key order does not span the two topics", name, o.Topic, n.Topic, o.Topic),
			note(orPos(o.At.Topic, o.Pos), "the old topic %q", o.Topic))
	}
	if ok, nk := keyName(o.Key), keyName(n.Key); !sameField(o.Key, n.Key) {
		b.report(CodeKeyChanged, orPos(n.At.Key, n.Pos),
			fmt.Sprintf("event %s's key changed from %s to %s: records of one entity land on other partitions, so per-key order breaks across the deploy", name, ok, nk),
			note(orPos(o.At.Key, o.Pos), "the old key %s", ok))
	}
	if oi, ni := idemKeyNames(o.IdemKey), idemKeyNames(n.IdemKey); !slices.EqualFunc(o.IdemKey, n.IdemKey, sameField) {
		b.report(CodeIdemKeyChanged, orPos(n.At.IdemKey, n.Pos),
			fmt.Sprintf("event %s's idempotency_key changed from %s to %s: redeliveries of records written before the deploy are not recognised as duplicates", name, oi, ni),
			note(orPos(o.At.IdemKey, o.Pos), "the old idempotency_key %s", oi))
	}
	if n.Guarantee < o.Guarantee {
		b.report(CodeGuaranteeWeakened, orPos(n.At.Guarantee, n.Pos),
			fmt.Sprintf("event %s's guarantee was weakened from %s to %s: consumers that rely on %s lose or repeat effects", name, o.Guarantee, n.Guarantee, o.Guarantee),
			note(orPos(o.At.Guarantee, o.Pos), "the old guarantee %s", o.Guarantee))
	}
	b.dedup()
	if o.Outbox && !n.Outbox {
		b.report(CodeOutboxOff, orPos(n.At.Outbox, n.Pos),
			fmt.Sprintf("event %s no longer goes through the outbox: an event can be lost between the database commit and the send", name),
			note(orPos(o.At.Outbox, o.Pos), "outbox was on"))
	}
	b.fields(o.Fields, n.Fields, o.Pos, n.Pos, "event "+name)
	if b.allowed {
		b.movedSummary()
	}
}

func (b *breakCheck) dedup() {
	o, n := b.old, b.cur
	stored := func(s event.DedupStore) bool { return s == event.DedupPostgres || s == event.DedupRedis }
	switch {
	case stored(o.Dedup) && n.Dedup != o.Dedup:
		b.report(CodeDedupStoreChanged, orPos(n.At.DedupStore, orPos(n.At.Dedup, n.Pos)),
			fmt.Sprintf("event %s's dedup store changed from %s to %s: what %s remembered is lost across the deploy, so redeliveries of records processed before it pass dedup", n.Name, o.Dedup, dedupName(n), o.Dedup),
			note(orPos(o.At.DedupStore, o.Pos), "the old dedup store %s", o.Dedup))
	case stored(n.Dedup) && n.Dedup == o.Dedup && n.DedupTTL < o.DedupTTL && n.Retention > 0 && n.DedupTTL < n.Retention:
		b.report(CodeDedupTTLShortened, orPos(n.At.DedupTTL, n.Pos),
			fmt.Sprintf("event %s's dedup.ttl was shortened from %s to %s, below retention %s: a redelivery older than %s passes dedup", n.Name, formatDuration(o.DedupTTL), formatDuration(n.DedupTTL), formatDuration(n.Retention), formatDuration(n.DedupTTL)),
			note(orPos(o.At.DedupTTL, o.Pos), "the old dedup.ttl %s", formatDuration(o.DedupTTL)))
	}
}

func dedupName(ev *Event) string {
	if ev.Dedup == event.DedupNone {
		return "none"
	}
	return ev.Dedup.String()
}

// movedSummary reports the event's move to a new version, which allowed
// the wire changes reported before it.
func (b *breakCheck) movedSummary() {
	o, n := b.old, b.cur
	msg := fmt.Sprintf("allowed: %s moved to v%d (new CloudEvents type %s)", n.Name, n.Version, n.CEType)
	if b.moved > 0 {
		msg += fmt.Sprintf(": %d breaking change(s) to its wire shape are allowed; consumers of %s must handle the new type before its producers send it", b.moved, o.CEType)
		if o.Topic == n.Topic {
			// The runtime reads ce_type only to choose among a topic's
			// events: alone on its topic, v2 reaches v1's handler.
			msg += fmt.Sprintf("; but it stays on topic %q, where a consumer with no other event on the topic reads records without looking at their type, so v%d records reach v%d handlers and the reverse: give v%d a new topic", n.Topic, n.Version, o.Version, n.Version)
		}
	}
	b.allowed = false // the summary itself is a warning of its own
	rule := breakingRules[CodeVersionMoved]
	if rule.modes&b.mode == 0 {
		return
	}
	if _, ok := n.Ignore[CodeVersionMoved]; ok {
		return
	}
	*b.diags = append(*b.diags, Diagnostic{
		Pos: orPos(n.At.Version, n.Pos), Severity: Warning, Code: CodeVersionMoved, Message: msg,
		Related: []Related{note(orPos(o.At.Version, o.Pos), "it was v%d (CloudEvents type %s)", o.Version, o.CEType)},
	})
}

// sameField reports whether a key field of the old schema is the one of
// the new: the same JSON key (a rename keeping it with json changes only
// Go), or the same name (its JSON key changed, reported on the field
// itself; the key's value, and so its partition, is the same).
func sameField(o, n *Field) bool {
	if o == nil || n == nil {
		return o == n
	}
	return o.Wire == n.Wire || o.Name == n.Name
}

func keyName(f *Field) string {
	if f == nil {
		return "none"
	}
	return f.Name
}

func idemKeyNames(fs []*Field) string {
	if len(fs) == 0 {
		return "none"
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// fields compares the fields of an event or a record type; where names
// what holds them, e.g. "event OrderPlaced" or "type Money (field total of
// event OrderPlaced)". oldAt and curAt locate the holder.
//
// Fields are matched by JSON key, which is what records carry: a field
// renamed with json keeping its old key is the same field (only Go names
// change). A field that keeps its name but reads another key is reported
// as one change of key (EB019), not as a removal and an addition.
func (b *breakCheck) fields(old, cur []*Field, oldAt, curAt Pos, where string) {
	curByWire := map[string]*Field{}
	for _, f := range cur {
		curByWire[f.Wire] = f
	}
	oldByWire := map[string]*Field{}
	var removed, added []*Field
	for _, of := range old {
		oldByWire[of.Wire] = of
		nf := curByWire[of.Wire]
		if nf == nil {
			removed = append(removed, of)
			continue
		}
		b.field(of, nf, where)
	}
	for _, nf := range cur {
		if oldByWire[nf.Wire] == nil {
			added = append(added, nf)
		}
	}
	removed, added = b.wireKeysChanged(removed, added, where)
	// One field removed and one of the same type added is most likely a
	// rename: say that the wire, which carries the key, sees two changes,
	// and how json keeps the key.
	rename := func(f *Field) string {
		if len(removed) != 1 || len(added) != 1 || !sameShape(removed[0].Type, added[0].Type) {
			return ""
		}
		return fmt.Sprintf(" (a rename of %s to %s? the JSON key is the field name unless json names another, so a rename is a removal and an addition; json: %s keeps the key)", removed[0].Name, added[0].Name, strconv.Quote(removed[0].Wire))
	}
	for _, of := range removed {
		if of.Optional {
			continue // old consumers do without it; new ones ignore it in old records
		}
		b.report(CodeFieldRemoved, of.Pos,
			fmt.Sprintf("required field %s of %s was removed: consumers built before the change reject records without it%s", of.Name, where, rename(of)),
			note(curAt, "%s no longer has it", where))
	}
	for _, nf := range added {
		if nf.Optional {
			continue // old records lack it, which an optional field allows
		}
		b.report(CodeFieldAdded, nf.Pos,
			fmt.Sprintf("required field %s was added to %s: records written before the change lack it, and consumers built after it reject them; add it as optional: true%s", nf.Name, where, rename(nf)),
			note(oldAt, "%s had no field %s", where, nf.Name))
	}
}

// wireKeysChanged reports each removed field whose name an added field
// has: the field stayed, its JSON key changed. It returns the fields left.
func (b *breakCheck) wireKeysChanged(removed, added []*Field, where string) (restRemoved, restAdded []*Field) {
	for _, of := range removed {
		i := slices.IndexFunc(added, func(nf *Field) bool { return nf.Name == of.Name })
		if i < 0 {
			restRemoved = append(restRemoved, of)
			continue
		}
		nf := added[i]
		added = slices.Delete(slices.Clone(added), i, i+1)
		b.report(CodeWireKeyChanged, nf.Pos,
			fmt.Sprintf("field %s of %s changed its JSON key from %s to %s: consumers built before the change read %s, which new records lack, and consumers built after it read %s, which old records lack", nf.Name, where, strconv.Quote(of.Wire), strconv.Quote(nf.Wire), strconv.Quote(of.Wire), strconv.Quote(nf.Wire)),
			note(of.Pos, "its JSON key was %s", strconv.Quote(of.Wire)))
		b.field(of, nf, where)
	}
	return restRemoved, added
}

func (b *breakCheck) field(of, nf *Field, where string) {
	switch {
	case of.Optional && !nf.Optional:
		b.report(CodeFieldRequired, nf.Pos,
			fmt.Sprintf("field %s of %s became required: records written before the change may lack it, and consumers built after it reject them", nf.Name, where),
			note(of.Pos, "it was optional"))
	case !of.Optional && nf.Optional:
		b.report(CodeFieldOptional, nf.Pos,
			fmt.Sprintf("field %s of %s became optional: records written after the change may lack it, and consumers built before it reject them", nf.Name, where),
			note(of.Pos, "it was required"))
	}
	b.typ(of.Type, nf.Type, of, nf, where)
}

// typ compares a field's old and new types; list and map elements, enum
// values and record fields are compared in turn.
func (b *breakCheck) typ(ot, nt *Type, of, nf *Field, where string) {
	changed := ot.Kind != nt.Kind ||
		ot.Kind == KindNamed && ot.Named.IsEnum() != nt.Named.IsEnum()
	if changed {
		b.report(CodeFieldType, nf.Pos,
			fmt.Sprintf("field %s of %s changed type from %s to %s: the two sides cannot read each other's value", nf.Name, where, of.Type, nf.Type),
			note(of.Pos, "it was %s", of.Type))
		return
	}
	switch ot.Kind {
	case KindList, KindMap:
		b.typ(ot.Elem, nt.Elem, of, nf, where)
	case KindNamed:
		pair := [2]*NamedType{ot.Named, nt.Named}
		if b.seen[pair] {
			return
		}
		b.seen[pair] = true
		inner := fmt.Sprintf("type %s (field %s of %s)", nt.Named.Name, nf.Name, where)
		if strings.HasPrefix(where, "type ") {
			// Name the event, not the whole path, for types in types.
			inner = fmt.Sprintf("type %s (used by event %s)", nt.Named.Name, b.cur.Name)
		}
		if ot.Named.IsEnum() {
			b.enum(ot.Named, nt.Named, inner)
			return
		}
		b.fields(ot.Named.Fields, nt.Named.Fields, ot.Named.Pos, nt.Named.Pos, inner)
	}
}

func (b *breakCheck) enum(ot, nt *NamedType, where string) {
	has := func(vs []*EnumValue, v string) bool {
		return slices.ContainsFunc(vs, func(x *EnumValue) bool { return x.Value == v })
	}
	for _, v := range ot.Values {
		if !has(nt.Values, v.Value) {
			b.report(CodeEnumValueRemoved, v.Pos,
				fmt.Sprintf("enum value %q of %s was removed: records written before the change may carry it, and consumers built after it reject them", v.Value, where),
				note(nt.Pos, "%s no longer has it", nt.Name))
		}
	}
	for _, v := range nt.Values {
		if !has(ot.Values, v.Value) {
			b.report(CodeEnumValueAdded, v.Pos,
				fmt.Sprintf("enum value %q was added to %s: records written after the change may carry it, and consumers built before it reject them", v.Value, where),
				note(ot.Pos, "%s had no value %q", ot.Name, v.Value))
		}
	}
}

// sameShape reports whether two types have the same wire shape.
func sameShape(a, b *Type) bool {
	var x, y strings.Builder
	typeShape(&x, a)
	typeShape(&y, b)
	return x.String() == y.String()
}
