package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
