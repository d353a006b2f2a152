package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps dotted key paths ("storage.max_bytes", "mqtt[1].qos") to
// the line that sets them, so that validation errors can name the line.
type positions map[string]int

func (p positions) line(key string) int {
	for k := key; k != ""; {
		if l, ok := p[k]; ok {
			return l
		}
		// A key not in the file (a default) is reported at its table.
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// expr is one top-level expression of a document: a key/value or a
// table header, the line its key is on, and its resolved dotted key.
type expr struct {
	line int
	key  string
	kv   bool
}

// indexPositions maps the keys of a document to their lines.
func indexPositions(data []byte) (positions, error) {
	pos, _, err := indexDocument(data)
	return pos, err
}

// indexDocument maps the keys of a document to their lines and lists its
// top-level expressions in order.
func indexDocument(data []byte) (positions, []expr, error) {
	pos := positions{}
	var exprs []expr
	arrays := map[string]int{} // resolved array-of-tables path -> count seen
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = resolveTable(keyParts(e.Key()), e.Kind == unstable.ArrayTable, arrays)
			pos[table] = keyLine(&p, e)
			exprs = append(exprs, expr{line: pos[table], key: table})
		case unstable.KeyValue:
			key := strings.Join(keyParts(e.Key()), ".")
			if table != "" {
				key = table + "." + key
			}
			pos[key] = keyLine(&p, e)
			exprs = append(exprs, expr{line: pos[key], key: key, kv: true})
		}
	}
	return pos, exprs, p.Error()
}

// resolveTable turns a table header into the path validation uses, with
// the current index of every enclosing array of tables:
// [[sensor.channel]] under the second [[sensor]] is "sensor[1].channel[k]".
func resolveTable(parts []string, isArray bool, arrays map[string]int) string {
	cur := ""
	for i, part := range parts {
		if cur != "" {
			cur += "."
		}
		cur += part
		last := i == len(parts)-1
		if last && isArray {
			arrays[cur]++
		}
		if n, ok := arrays[cur]; ok {
			cur = fmt.Sprintf("%s[%d]", cur, n-1)
		}
	}
	return cur
}

func keyLine(p *unstable.Parser, e *unstable.Node) int {
	it := e.Key()
	if !it.Next() {
		return 0
	}
	return p.Shape(p.Range(it.Node().Data)).Start.Line
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// splitHostPort accepts "host:port", ":port" and "[v6]:port" with a port in 1..65535.
func splitHostPort(addr string) (host string, port int, err error) {
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port or :port, got %q", addr)
	}
	n, err := strconv.Atoi(ps)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", ps)
	}
	return h, n, nil
}
