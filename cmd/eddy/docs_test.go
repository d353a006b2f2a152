package main

import (
	"bufio"
	"bytes"
	"encoding"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/config"
)

// TestDocsConfigExamples runs every ```toml block of README.md and
// docs/*.md through `eddy check-config`: an example a user copies must
// load as printed.
func TestDocsConfigExamples(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	total := 0
	for _, f := range files {
		blocks, err := tomlBlocks(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			total++
			name := fmt.Sprintf("%s:%d", filepath.Base(f), b.line)
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "example.toml")
				if err := os.WriteFile(path, []byte(b.text), 0o600); err != nil {
					t.Fatal(err)
				}
				var out, errb bytes.Buffer
				if rc := realMain([]string{"check-config", path}, &out, &errb); rc != exitOK {
					t.Errorf("the example at %s fails check-config (exit %d):\n%s\n--- example ---\n%s", name, rc, errb.String(), b.text)
				}
			})
		}
	}
	if total < 3 {
		t.Errorf("found %d toml examples in README.md and docs/; the extraction is broken", total)
	}
}

type codeBlock struct {
	line int // of the opening fence
	text string
}

// tomlBlocks returns the ```toml fenced blocks of a Markdown file.
func tomlBlocks(path string) ([]codeBlock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var blocks []codeBlock
	var cur *codeBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```toml":
			cur = &codeBlock{line: n}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a ```toml block is not closed", path, cur.line)
	}
	return blocks, sc.Err()
}

// TestDocsMetricsFamilies: every eddy_* family a running daemon exports
// (with a sensor and an MQTT block, so that their families exist) is
// described in docs/metrics.md.
func TestDocsMetricsFamilies(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, freePort(t)) // no broker there: its families exist all the same
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n[[sensor]]\nkind = \"system\"\n")
	f.Close()
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	d := startEddy(t, "--config", cfg)
	data := filepath.Join(dir, "data")
	waitHealthy(t, d, base, data)
	client := httpsClient(t, data)
	var families []string
	waitUntil(t, 10*time.Second, "sensor families in /metrics", func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+e2eToken)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		families = families[:0]
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "# HELP eddy_"); ok {
				families = append(families, "eddy_"+strings.Fields(name)[0])
			}
		}
		return slices.ContainsFunc(families, func(s string) bool { return strings.HasPrefix(s, "eddy_sensor_") })
	})
	for _, name := range families {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("%s is exported but not described in docs/metrics.md", name)
		}
	}
	if len(families) < 40 {
		t.Errorf("only %d eddy_* families: %v", len(families), families)
	}
}

// TestDocsConfigKeys: every key of the configuration schema is described
// in docs/config.md, in the section of its table (a heading naming
// `[table]` or `[[table]]`).
func TestDocsConfigKeys(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // table path -> its section's text
	var cur []string
	text := ""
	flush := func() {
		for _, c := range cur {
			sections[c] += text
		}
	}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(line, "#") {
			flush()
			cur, text = nil, ""
			for _, m := range tableHeading.FindAllStringSubmatch(line, -1) {
				cur = append(cur, m[1])
			}
			continue
		}
		text += line + "\n"
	}
	flush()
	keys := map[string][]string{}
	schemaKeys(reflect.TypeFor[config.Config](), "", keys)
	if len(keys) < 8 {
		t.Fatalf("schema walk found %d tables: %v", len(keys), keys)
	}
	for table, names := range keys {
		sec, ok := sections[table]
		if !ok {
			t.Errorf("docs/config.md has no section headed `[%s]` or `[[%s]]`", table, table)
			continue
		}
		for _, k := range names {
			if !strings.Contains(sec, "`"+k+"`") {
				t.Errorf("docs/config.md does not describe %s.%s in its section", table, k)
			}
		}
	}
}

var tableHeading = regexp.MustCompile("`\\[\\[?([a-z_.]+)\\]\\]?`")

// schemaKeys collects the TOML keys of struct type t by table path.
func schemaKeys(t reflect.Type, table string, out map[string][]string) {
	text := reflect.TypeFor[encoding.TextUnmarshaler]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		path := name
		if table != "" {
			path = table + "." + name
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(text) {
			schemaKeys(ft, path, out)
			continue
		}
		out[table] = append(out[table], name)
	}
}
