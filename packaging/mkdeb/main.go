// Command mkdeb builds eddy's .deb packages from the static binaries that
// cross/build.sh leaves in a directory: eddy_<version>_<arch>.deb for arm64,
// armhf (the GOARM=6 binary) and amd64, described by packaging/nfpm.yaml
// and built with nfpm as a library.
//
// Packages are reproducible: every timestamp (files, control archive, ar
// members, changelog) is SOURCE_DATE_EPOCH, the changelog and copyright are
// generated from the commit and the binary's own module list, and nothing
// else varies. With -check, each package is built twice and the two compared
// byte for byte. mkdeb prints each package's SHA-256.
//
//	mkdeb -src .. -bin ../dist -out ../dist -version "$(git describe --tags --always --dirty)" -epoch "$SOURCE_DATE_EPOCH"
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

// arches maps each Debian architecture to the binary built for it.
var arches = []struct{ deb, binary string }{
	{"arm64", "eddy-linux-arm64"},
	{"armhf", "eddy-linux-armv6"}, // GOARM=6: also runs on the Pi Zero/1
	{"amd64", "eddy-linux-amd64"},
}

type options struct {
	src, bin, out, work  string
	version, debVersion  string
	commit               string
	epoch                time.Time
	maintainer, license  string
	only                 map[string]bool
	check                bool
	gomodcache, nfpmYAML string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	var o options
	var epoch int64
	var only string
	fs.StringVar(&o.src, "src", "..", "the eddy source tree")
	fs.StringVar(&o.bin, "bin", "../dist", "directory holding eddy-linux-{arm64,armv6,amd64}")
	fs.StringVar(&o.out, "out", "../dist", "where the packages go")
	fs.StringVar(&o.version, "version", "", "eddy's version as `git describe --tags --always --dirty` prints it")
	fs.StringVar(&o.debVersion, "deb-version", "", "the Debian version (default: derived from -version and -epoch)")
	fs.StringVar(&o.commit, "commit", "", "the commit, for the changelog")
	fs.Int64Var(&epoch, "epoch", -1, "SOURCE_DATE_EPOCH: the commit's time, used for every timestamp")
	fs.StringVar(&o.maintainer, "maintainer", "eddy developers <eddy@users.noreply.github.com>", "the Maintainer field")
	fs.StringVar(&o.license, "license", "", "the License field (empty: none chosen yet)")
	fs.StringVar(&only, "arch", "", "comma-separated Debian architectures to build (default all)")
	fs.BoolVar(&o.check, "check", false, "build each package twice and fail unless the two are identical")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.version == "" || epoch < 0 {
		return errors.New("-version and -epoch are required")
	}
	o.epoch = time.Unix(epoch, 0).UTC()
	if o.debVersion == "" {
		v, err := debVersion(o.version, o.epoch)
		if err != nil {
			return err
		}
		o.debVersion = v
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, a := range strings.Split(only, ",") {
			o.only[a] = true
		}
	}
	var err error
	if o.src, err = filepath.Abs(o.src); err != nil {
		return err
	}
	o.nfpmYAML = filepath.Join(o.src, "packaging", "nfpm.yaml")
	if o.gomodcache, err = goEnv("GOMODCACHE"); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mkdeb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	changelog, err := gzipBytes([]byte(debChangelog(o.debVersion, o.version, o.commit, o.maintainer, o.epoch)))
	if err != nil {
		return err
	}
	manPage, err := os.ReadFile(filepath.Join(o.src, "packaging", "eddy.1"))
	if err != nil {
		return err
	}
	if manPage, err = gzipBytes(manPage); err != nil {
		return err
	}
	// The architectures are packaged side by side (xz is the slow part), and
	// with -check each package's second build runs beside its first.
	type result struct {
		name string
		pkg  []byte
		err  error
	}
	var results []chan result
	for _, a := range arches {
		if o.only != nil && !o.only[a.deb] {
			continue
		}
		ch := make(chan result, 1)
		results = append(results, ch)
		go func(o options, debArch, binary string) {
			pkg, err := packageArch(o, filepath.Join(work, debArch), debArch, binary, changelog, manPage)
			if err != nil {
				err = fmt.Errorf("%s: %w", debArch, err)
			}
			ch <- result{fmt.Sprintf("eddy_%s_%s.deb", o.debVersion, debArch), pkg, err}
		}(o, a.deb, filepath.Join(o.bin, a.binary))
	}
	var errs []error
	for _, ch := range results {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if err := os.WriteFile(filepath.Join(o.out, r.name), r.pkg, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%x  %s\n", sha256.Sum256(r.pkg), filepath.Join(o.out, r.name))
	}
	return errors.Join(errs...)
}

// packageArch builds one architecture's package in its own work dir (the
// copyright lists the modules linked into that binary) and returns it.
func packageArch(o options, work, debArch, binary string, changelog, manPage []byte) ([]byte, error) {
	o.work = work
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return nil, err
	}
	copyright, err := debCopyright(binary, o.gomodcache, o.epoch)
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"copyright": copyright, "changelog.gz": changelog, "eddy.1.gz": manPage} {
		if err := os.WriteFile(filepath.Join(o.work, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	if !o.check {
		return build(o, debArch, binary)
	}
	var again []byte
	var againErr error
	done := make(chan struct{})
	go func() { defer close(done); again, againErr = build(o, debArch, binary) }()
	pkg, err := build(o, debArch, binary)
	<-done
	if err = errors.Join(err, againErr); err != nil {
		return nil, err
	}
	if !bytes.Equal(pkg, again) {
		return nil, errors.New("two builds from the same inputs differ: not reproducible")
	}
	return pkg, nil
}

// build returns one package's bytes.
func build(o options, debArch, binary string) ([]byte, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, err
	}
	env := map[string]string{
		"EDDY_DEB_ARCH":    debArch,
		"EDDY_DEB_VERSION": o.debVersion,
		"EDDY_MAINTAINER":  o.maintainer,
		"EDDY_LICENSE":     o.license,
		"EDDY_BINARY":      binary,
		"EDDY_SRC":         o.src,
		"EDDY_WORK":        o.work,
	}
	// nfpm expands variables in some fields only; expand the whole file,
	// and refuse a variable mkdeb does not know.
	text, err := os.ReadFile(o.nfpmYAML)
	if err != nil {
		return nil, err
	}
	var unknown []string
	mapping := func(k string) string {
		v, ok := env[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	}
	expanded := os.Expand(string(text), mapping)
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%s: unknown variables %v", o.nfpmYAML, unknown)
	}
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(expanded), mapping)
	if err != nil {
		return nil, err
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return nil, err
	}
	info.MTime = o.epoch
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// debVersion turns `git describe --tags --always --dirty` into a Debian
// version that sorts the way the commits do:
//
//	v1.2.3                 1.2.3
//	v1.2.3-rc1             1.2.3~rc1          (before 1.2.3)
//	v1.2.3-4-gabcdef0      1.2.3+git4.gabcdef0 (after 1.2.3)
//	abcdef0 (no tag yet)   0~git20261204.175959.abcdef0 (by commit time)
//	...-dirty              ...+dirty
func debVersion(describe string, commitTime time.Time) (string, error) {
	v, dirty := strings.CutSuffix(describe, "-dirty")
	suffix := ""
	if dirty {
		suffix = "+dirty"
	}
	if isHex(v) {
		return "0~git" + commitTime.UTC().Format("20060102.150405") + "." + v + suffix, nil
	}
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		return "", fmt.Errorf("version %q: a tag must start with a digit (or v and a digit)", describe)
	}
	// The last two fields of a describe past a tag: -<count>-g<hash>.
	if parts := strings.Split(v, "-"); len(parts) >= 3 {
		n, h := parts[len(parts)-2], parts[len(parts)-1]
		if _, err := strconv.Atoi(n); err == nil && strings.HasPrefix(h, "g") && isHex(h[1:]) {
			tag := strings.Join(parts[:len(parts)-2], "-")
			return strings.ReplaceAll(tag, "-", "~") + "+git" + n + "." + h + suffix, nil
		}
	}
	return strings.ReplaceAll(v, "-", "~") + suffix, nil
}

func isHex(s string) bool {
	if len(s) < 4 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// debChangelog is a one-entry Debian changelog for this build.
func debChangelog(debVer, version, commit, maintainer string, t time.Time) string {
	what := "eddy " + version
	if commit != "" {
		what += " (commit " + commit + ")"
	}
	return fmt.Sprintf("eddy (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n",
		debVer, what, maintainer, t.UTC().Format(time.RFC1123Z))
}

// gzipBytes compresses like `gzip -9n`: no name, no timestamp.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// debCopyright writes /usr/share/doc/eddy/copyright: eddy itself, then every
// Go module linked into binary (read from its build info) with the license
// text from the module cache, so the statically linked code is accounted for.
func debCopyright(binary, gomodcache string, t time.Time) ([]byte, error) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	fmt.Fprintf(&b, "Upstream-Name: eddy\nSource: https://github.com/eddy-iot/eddy\n\n")
	fmt.Fprintf(&b, "Files: *\nCopyright: %d the eddy authors\nLicense: eddy\n", t.Year())
	fmt.Fprintf(&b, " The eddy authors have not yet published a license for eddy; until they\n do, all rights are reserved.\n")
	fmt.Fprintf(&b, "Comment: /usr/bin/eddy is statically linked with %s and the Go modules\n below (path and version); each one's license follows in full.\n", bi.GoVersion)
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		text, err := moduleLicense(gomodcache, m.Path, m.Version)
		if err != nil {
			return nil, err
		}
		if isApache2(text) {
			// Debian ships this one: refer to it rather than repeat it.
			fmt.Fprintf(&b, "\nFiles: go-module:%s@%s\nCopyright: the %s authors\nLicense: Apache-2.0\n", m.Path, m.Version, m.Path)
			b.WriteString(" On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n")
			continue
		}
		fmt.Fprintf(&b, "\nFiles: go-module:%s@%s\nCopyright: the %s authors (see below)\nLicense: %s\n", m.Path, m.Version, m.Path, m.Path)
		for _, l := range strings.Split(strings.TrimRight(string(text), "\n"), "\n") {
			l = strings.TrimRight(l, " \t\r")
			if l == "" {
				l = "."
			}
			b.WriteString(" " + l + "\n")
		}
	}
	goLicense, err := goRootLicense()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "\nFiles: go-runtime:%s\nCopyright: The Go Authors\nLicense: Go\n", bi.GoVersion)
	for _, l := range strings.Split(strings.TrimRight(string(goLicense), "\n"), "\n") {
		if l = strings.TrimRight(l, " \t\r"); l == "" {
			l = "."
		}
		b.WriteString(" " + l + "\n")
	}
	return b.Bytes(), nil
}

// isApache2 tells whether a license file is the Apache License 2.0.
func isApache2(text []byte) bool {
	return bytes.Contains(text, []byte("Apache License")) && bytes.Contains(text, []byte("Version 2.0, January 2004"))
}

// moduleLicense reads a module's license file from the module cache.
func moduleLicense(gomodcache, path, version string) ([]byte, error) {
	dir := filepath.Join(gomodcache, escapePath(path)+"@"+version)
	for _, name := range []string{"LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "LICENSE-MIT", "epl-v20.html", "edl-v10"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no license file for %s@%s in %s (run go mod download)", path, version, dir)
}

// escapePath is the module cache's case encoding: "A" becomes "!a".
func escapePath(p string) string {
	var b strings.Builder
	for _, c := range p {
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('!')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}

func goRootLicense() ([]byte, error) {
	root, err := goEnv("GOROOT")
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(root, "LICENSE"))
}

func goEnv(key string) (string, error) {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", key, err)
	}
	return strings.TrimSpace(string(out)), nil
}
