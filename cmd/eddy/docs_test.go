package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
