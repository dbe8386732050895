package generator

import (
	"go/token"
	"strings"
	"unicode"
)

// commonInitialisms are written in upper case inside Go names, as golint
// and the Go code review comments ask (OrderID, not OrderId).
var commonInitialisms = map[string]bool{
	"acl": true, "api": true, "ascii": true, "cpu": true, "css": true, "dns": true,
	"eof": true, "guid": true, "html": true, "http": true, "https": true, "id": true,
	"ip": true, "json": true, "lhs": true, "qps": true, "ram": true, "rhs": true,
	"rpc": true, "sla": true, "smtp": true, "sql": true, "ssh": true, "tcp": true,
	"tls": true, "ttl": true, "udp": true, "ui": true, "uid": true, "uuid": true,
	"uri": true, "url": true, "utf8": true, "vm": true, "xml": true, "xmpp": true,
	"xsrf": true, "xss": true, "sku": true, "iban": true, "vat": true,
}

// predeclared lists Go's predeclared identifiers: a package named after one
// would shadow it in every file that imports the package.
var predeclared = map[string]bool{
	"any": true, "append": true, "bool": true, "byte": true, "cap": true, "clear": true,
	"close": true, "comparable": true, "complex": true, "complex128": true, "complex64": true,
	"copy": true, "delete": true, "error": true, "false": true, "float32": true,
	"float64": true, "imag": true, "int": true, "int16": true, "int32": true, "int64": true,
	"int8": true, "iota": true, "len": true, "make": true, "max": true, "min": true,
	"new": true, "nil": true, "panic": true, "print": true, "println": true, "real": true,
	"recover": true, "rune": true, "string": true, "true": true, "uint": true,
	"uint16": true, "uint32": true, "uint64": true, "uint8": true, "uintptr": true,
}

// snakeToCamel converts lower_snake_case (or kebab-case, dotted) to an
// exported Go name with initialisms: order_id → OrderID.
func snakeToCamel(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
		lower := strings.ToLower(part)
		if commonInitialisms[lower] {
			b.WriteString(strings.ToUpper(lower))
			continue
		}
		if base, ok := strings.CutSuffix(lower, "s"); ok && commonInitialisms[base] {
			b.WriteString(strings.ToUpper(base) + "s") // ids → IDs
			continue
		}
		r := []rune(part)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	return b.String()
}

// camelToGo keeps an UpperCamelCase schema name but upper-cases trailing or
// inner initialisms written as words: OrderId → OrderID.
func camelToGo(s string) string {
	words := splitCamel(s)
	for i, w := range words {
		if commonInitialisms[strings.ToLower(w)] {
			words[i] = strings.ToUpper(w)
		}
	}
	return strings.Join(words, "")
}

// splitCamel splits "OrderIdHTTPServer" into ["Order", "Id", "HTTP", "Server"].
func splitCamel(s string) []string {
	var words []string
	r := []rune(s)
	start := 0
	for i := 1; i < len(r); i++ {
		prevUpper, curUpper := unicode.IsUpper(r[i-1]), unicode.IsUpper(r[i])
		nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
		if (!prevUpper && curUpper) || (prevUpper && curUpper && nextLower) || (unicode.IsDigit(r[i-1]) && curUpper) {
			words = append(words, string(r[start:i]))
			start = i
		}
	}
	return append(words, string(r[start:]))
}

// lowerFirst turns an exported Go name into an unexported one: OrderID →
// orderID, HTTPServer → httpServer; keywords and predeclared names get a
// trailing underscore.
func lowerFirst(s string) string {
	r := []rune(s)
	n := 0
	for n < len(r) && unicode.IsUpper(r[n]) {
		n++
	}
	if n > 1 && n < len(r) {
		n-- // the last upper-case letter starts the next word: HTTPServer
	}
	for i := 0; i < n; i++ {
		r[i] = unicode.ToLower(r[i])
	}
	out := string(r)
	if token.IsKeyword(out) || predeclared[out] {
		out += "_"
	}
	return out
}

func isUpperCamel(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isLowerSnake(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// levenshtein is the edit distance between a and b, for "did you mean".
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// suggest returns the candidate closest to s, if it is close enough to be a
// likely misspelling.
func suggest(s string, candidates []string) string {
	best, bestDist := "", len(s)/2+2
	for _, c := range candidates {
		if d := levenshtein(strings.ToLower(s), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// didYouMean formats a suggestion suffix, or nothing.
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" {
		return "; did you mean " + quote(c) + "?"
	}
	return ""
}

func quote(s string) string { return "\"" + s + "\"" }
