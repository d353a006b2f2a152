package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/eddy-iot/eddy/backoff"
	"github.com/eddy-iot/eddy/sse"
	devtls "github.com/eddy-iot/eddy/tls"
)

// tailFlags are eddy tail's options.
type tailFlags struct {
	url         string
	topics      []string
	lastEventID string
	http3       bool
	token       string
	ca          string
	fingerprint string
	mode        string
	maxBackoff  time.Duration
	idle        time.Duration
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const tailNotes = `
URL is the device, e.g. https://pi.local:8443 (its /events is used), or
a full /events URL with parameters. Trust the device with --ca (the
device's <data>/tls/ca.pem, which ` + "`eddy cert`" + ` names) or pin its certificate
with --fingerprint (from ` + "`eddy cert`" + ` on the device); a certificate tail
cannot verify is an error (exit 1), not something to retry. The token
comes from --token or $EDDY_TOKEN (` + "`eddy token`" + ` on the device prints it).
Gaps are reported on stderr. Exit status 1 when the device refuses the
token or the certificate, 2 for a bad command line.`

func parseTailFlags(args []string, stdout, stderr io.Writer) (tailFlags, error) {
	var f tailFlags
	fs := newFlagSet("tail", stderr)
	fs.Var((*multiFlag)(&f.topics), "topic", "`FILTER` with MQTT wildcards, e.g. 'system/#' (repeatable; default #)")
	fs.StringVar(&f.lastEventID, "last-event-id", "", "resume after this event `ID`")
	fs.BoolVar(&f.http3, "http3", false, "use HTTP/3 (QUIC) instead of HTTP/2")
	fs.StringVar(&f.token, "token", os.Getenv("EDDY_TOKEN"), "access `TOKEN` (default $EDDY_TOKEN)")
	fs.StringVar(&f.ca, "ca", "", "CA certificate `FILE` to trust (the device's <data>/tls/ca.pem)")
	fs.StringVar(&f.fingerprint, "fingerprint", "", "`SHA256` fingerprint of the device certificate to pin (as eddy cert prints it)")
	fs.StringVar(&f.mode, "mode", "exact", "stream `MODE`: exact (never drops) or downsample")
	fs.DurationVar(&f.maxBackoff, "max-backoff", 30*time.Second, "longest wait between reconnects")
	fs.DurationVar(&f.idle, "idle-timeout", 45*time.Second, "reconnect when nothing, not even a heartbeat, arrives for this long")
	// Flags may come before or after the URL.
	pos, err := parseFlags(fs, "tail", tailNotes, args, stdout, stderr)
	if err != nil {
		return f, err
	}
	if len(pos) != 1 {
		usageError(stderr, "tail", "want exactly one URL")
		return f, errors.New("want exactly one URL")
	}
	f.url = pos[0]
	if f.lastEventID != "" {
		if _, err := strconv.ParseUint(f.lastEventID, 10, 64); err != nil {
			fmt.Fprintf(stderr, "eddy tail: --last-event-id %q is not an event id\n", f.lastEventID)
			return f, err
		}
	}
	return f, nil
}

func tailCmd(args []string, stdout, stderr io.Writer) int {
	f, err := parseTailFlags(args, stdout, stderr)
	if err != nil {
		return flagsExit(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t, err := newTailer(f, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "eddy tail:", err)
		return exitConfig
	}
	defer t.close()
	if err := t.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "eddy tail:", strings.TrimPrefix(err.Error(), errFatal.Error()+": "))
		return exitFail
	}
	return exitOK
}

// tailer subscribes to one device and prints each record once, resuming
// after every disconnect from the last id it printed.
type tailer struct {
	f      tailFlags
	url    string
	client *http.Client
	closer func()
	out    *bufio.Writer
	stderr io.Writer
	last   uint64 // last id printed; 0 before any
	retry  time.Duration
}

// errFatal marks answers that retrying cannot fix (401, 400, 404, a
// certificate that cannot be verified).
var errFatal = errors.New("not retrying")

func newTailer(f tailFlags, stdout, stderr io.Writer) (*tailer, error) {
	u, err := eventsURL(f.url, f.topics, f.mode)
	if err != nil {
		return nil, err
	}
	tc, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: f.ca, Fingerprint: f.fingerprint})
	if err != nil {
		return nil, err
	}
	t := &tailer{f: f, url: u, out: bufio.NewWriter(stdout), stderr: stderr, retry: time.Second}
	if f.lastEventID != "" {
		t.last, _ = strconv.ParseUint(f.lastEventID, 10, 64)
	}
	if f.http3 {
		// Keep-alives and a short idle timeout notice a device that died
		// without a word (QUIC runs over UDP: no RST tells us).
		tr := &http3.Transport{TLSClientConfig: tc, QUICConfig: &quic.Config{
			MaxIdleTimeout: 6 * time.Second, KeepAlivePeriod: 2 * time.Second,
		}}
		t.client = &http.Client{Transport: tr}
		t.closer = func() { tr.Close() }
	} else {
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, ResponseHeaderTimeout: 15 * time.Second}
		t.client = &http.Client{Transport: tr}
		t.closer = tr.CloseIdleConnections
	}
	return t, nil
}

func (t *tailer) close() { t.closer() }

// eventsURL turns a device URL into its /events URL with the filters.
func eventsURL(raw string, topics []string, mode string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("URL %q: want https://host:port", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/events"
	}
	q := u.Query()
	for _, t := range topics {
		q.Add("topic", t)
	}
	if mode != "" && q.Get("mode") == "" {
		q.Set("mode", mode)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (t *tailer) run(ctx context.Context) error {
	bo := backoff.Backoff{Max: t.f.maxBackoff}
	for {
		progressed, err := t.stream(ctx)
		t.out.Flush()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errFatal) {
			return err
		}
		if progressed {
			bo.Reset()
		}
		bo.First = t.retry // the server's hint starts the schedule
		wait := bo.Next()
		fmt.Fprintf(t.stderr, "eddy tail: %v; reconnecting in %s (after id %d)\n", err, wait.Round(time.Millisecond), t.last)
		if !backoff.SleepFor(ctx, wait) {
			return ctx.Err()
		}
	}
}

// stream runs one connection; it reports whether any record was printed.
// The connection is dropped when nothing arrives for the idle timeout
// (a half-open TCP connection, a device that lost power).
func (t *tailer) stream(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(t.f.idle, func() {
		cancel(fmt.Errorf("nothing received for %s", t.f.idle))
	})
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if t.f.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.f.token)
	}
	if t.last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(t.last, 10))
	}
	resp, err := t.client.Do(req)
	if err != nil {
		if cerr := certError(err, t.f, req.URL.Hostname()); cerr != nil {
			return false, fmt.Errorf("%w: %w", errFatal, cerr)
		}
		return false, causeOr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return false, fmt.Errorf("%w: %w\n  The device refused the token: pass the one `eddy token` prints on the device with --token or $EDDY_TOKEN", errFatal, err)
		case http.StatusForbidden, http.StatusBadRequest, http.StatusNotFound:
			return false, fmt.Errorf("%w: %w", errFatal, err)
		}
		return false, err
	}
	printed := false
	body := &activityReader{r: resp.Body, on: func() { idle.Reset(t.f.idle) }}
	err = readEvents(body, func(ev sseEvent) error {
		if ev.retry > 0 {
			t.retry = ev.retry
		}
		if ok, err := t.handle(ev); err != nil || !ok {
			return err
		}
		printed = true
		return nil
	})
	if err == nil {
		err = errors.New("stream ended")
	}
	return printed, causeOr(ctx, err)
}

// causeOr prefers the reason the stream's context was cancelled.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// activityReader calls on after every read that returned data.
type activityReader struct {
	r  io.Reader
	on func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.on()
	}
	return n, err
}

// handle prints a reading unless its id was printed already; gaps are
// reported on stderr.
func (t *tailer) handle(ev sseEvent) (bool, error) {
	switch ev.event {
	case "gap":
		fmt.Fprintf(t.stderr, "eddy tail: gap: %s\n", ev.data)
		return false, nil
	case "", "reading":
	default:
		return false, nil
	}
	id, err := strconv.ParseUint(ev.id, 10, 64)
	if err != nil {
		return false, fmt.Errorf("event without a numeric id: %q", ev.id)
	}
	if id <= t.last {
		return false, nil // already printed before a reconnect
	}
	if !json.Valid([]byte(ev.data)) {
		// Skip it rather than reconnect: the device would send the same
		// event again, and a tail must never loop on one event.
		fmt.Fprintf(t.stderr, "eddy tail: event %d: data is not JSON (%d bytes); skipped\n", id, len(ev.data))
		t.last = id
		return false, nil
	}
	t.out.WriteString(ev.data)
	t.out.WriteByte('\n')
	t.last = id
	// A collector reads line by line: each record goes out at once.
	return true, t.out.Flush()
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	id, event, data string
	retry           time.Duration
}

// readEvents feeds fn with the events of r, parsed by sse.ReadEvents
// (the repository's one event-stream parser); lines are capped at 4 MiB.
func readEvents(r io.Reader, fn func(sseEvent) error) error {
	return sse.ReadEvents(r, 4<<20, func(ev sse.Event) error {
		return fn(sseEvent{id: ev.ID, event: ev.Type, data: ev.Data, retry: ev.Retry})
	})
}
