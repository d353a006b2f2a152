package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// median of xs (the mean of the middle two for an even count); 0 when
// empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread is "median [min-max]" of xs formatted with format.
func spread(format string, xs []float64) string {
	if len(xs) == 1 {
		return fmt.Sprintf(format, xs[0])
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", median(xs), slices.Min(xs), slices.Max(xs))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// drops is everything a client missed: gap events, seq jumps and
// deliveries owed but never received.
func (r *streamResult) drops() float64 {
	return float64(r.gaps + r.jumps + uint64(max(r.missing, 0)))
}

func printStreamLine(w io.Writer, r *streamResult) {
	h2, h3 := r.appByProto[protoH2], r.appByProto[protoH3]
	fmt.Fprintf(w, "stream %-8s run %d rate %5d/s: appended %.0f/s, %9.0f deliveries/s, append->recv p50 %.2f p99 %.2f ms (h2 p99 %.2f, h3 p99 %.2f), pub->recv p50 %.2f p99 %.2f ms, "+
		"server %.2f µs/delivery, %.1f events/write, cores server %.2f tool %.2f broker %.2f, RSS %.1f MiB, published %d, gaps %d, jumps %d, missing %d, server dropped %.0f, drained %v, ended %d\n",
		r.kind, r.run, r.rate, r.appended, r.perSec, ms(r.app.quantile(.5)), ms(r.app.quantile(.99)), ms(quantileOf(h2, .99)), ms(quantileOf(h3, .99)),
		ms(r.pub.quantile(.5)), ms(r.pub.quantile(.99)), float64(r.cpuPerDel)/1e3, r.perFlush, r.cores[0], r.cores[1], r.cores[2],
		mib(r.rss), r.published, r.gaps, r.jumps, r.missing, r.serverDrop, r.drained, r.ended)
	if r.lateServer >= 0 || r.lateTool >= 0 {
		fmt.Fprintf(w, "  goroutine wake-ups that waited over %.1f ms for a CPU: server %s, tool %s\n",
			lateWake*1e3, share([]float64{r.lateServer}), share([]float64{r.lateTool}))
	}
	if r.quicIn > 0 {
		fmt.Fprintf(w, "  HTTP/3 clients: %.0f packets/s received, %.0f bytes each, %.0f packets/s sent", r.quicIn, r.quicSize, r.quicOut)
		if r.quicServerSent >= 0 && r.quicServerLost >= 0 {
			fmt.Fprintf(w, "; eddy: %.0f packets/s sent, %.0f declared lost in the window", r.quicServerSent, r.quicServerLost)
		}
		fmt.Fprintln(w)
	}
	if want := float64(r.rate) * r.publishFor.Seconds(); float64(r.published) < 0.9*want {
		fmt.Fprintf(w, "  (PUBLISHER BEHIND: %d of %.0f records; the machine is overloaded)\n", r.published, want)
	}
}

// share formats the median of shares (0..1) as a percentage, "–" when
// unknown (negative).
func share(xs []float64) string {
	if len(xs) == 0 || median(xs) < 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f%%", 100*median(xs))
}

func quantileOf(h *hist, q float64) time.Duration {
	if h == nil {
		return 0
	}
	return h.quantile(q)
}

// collect maps each result of kind at rate through f.
func collect(rs []streamResult, kind string, rate int, f func(*streamResult) float64) []float64 {
	var out []float64
	for i := range rs {
		if rs[i].kind == kind && rs[i].rate == rate {
			out = append(out, f(&rs[i]))
		}
	}
	return out
}

// printStreamReport prints medians [min–max] over the runs as a Markdown
// table, the ratios eddy/baseline, and the targets.
func printStreamReport(fl flags, rs []streamResult, mems []memResult) {
	w := fl.out
	fmt.Fprintf(w, "\n### Streaming: %d clients (eddy: connections over %v in turn; baseline: HTTP/2), %d streams per connection, %d topics, mosquitto max_inflight_messages %d (0: default 20); median [min–max] of %d runs of %s\n\n",
		fl.clients, fl.protos, fl.perConn, fl.topics, fl.inflight, fl.runs, fl.window)
	fmt.Fprintln(w, "| server | records/s | appended/s | deliveries/s | append→recv p50 ms | p99 ms | p99 h2 / h3 ms | publish→recv p50 ms | p99 ms | server CPU µs/delivery | server cores | tool cores | wake-ups waiting >10 ms, server / tool | drops |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	kinds := []string{kindEddy, kindBaseline}
	for _, k := range kinds {
		for _, rate := range fl.rates {
			get := func(f func(*streamResult) float64) []float64 { return collect(rs, k, rate, f) }
			if len(get(func(*streamResult) float64 { return 0 })) == 0 {
				continue
			}
			byProto := func(p proto) float64 {
				return median(get(func(r *streamResult) float64 { return ms(quantileOf(r.appByProto[p], .99)) }))
			}
			appended := "–"
			if k == kindEddy {
				appended = spread("%.0f", get(func(r *streamResult) float64 { return r.appended }))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %.1f / %.1f | %s | %s | %s | %s | %s | %s / %s | %s |\n", k, rate, appended,
				spread("%.0f", get(func(r *streamResult) float64 { return r.perSec })),
				spread("%.1f", get(func(r *streamResult) float64 { return ms(r.app.quantile(.5)) })),
				spread("%.1f", get(func(r *streamResult) float64 { return ms(r.app.quantile(.99)) })),
				byProto(protoH2), byProto(protoH3),
				spread("%.2f", get(func(r *streamResult) float64 { return ms(r.pub.quantile(.5)) })),
				spread("%.1f", get(func(r *streamResult) float64 { return ms(r.pub.quantile(.99)) })),
				spread("%.1f", get(func(r *streamResult) float64 { return float64(r.cpuPerDel) / 1e3 })),
				spread("%.2f", get(func(r *streamResult) float64 { return r.cores[0] })),
				spread("%.2f", get(func(r *streamResult) float64 { return r.cores[1] })),
				share(get(func(r *streamResult) float64 { return r.lateServer })),
				share(get(func(r *streamResult) float64 { return r.lateTool })),
				spread("%.0f", get((*streamResult).drops)))
		}
	}
	fmt.Fprintln(w, "\n| server | clients | RSS before | RSS with clients | RSS per client |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, m := range mems {
		fmt.Fprintf(w, "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB |\n", m.kind, m.clients, mib(m.before), mib(m.after), m.perClient/1024)
	}
	fmt.Fprintln(w)
	for _, rate := range fl.rates {
		e := func(f func(*streamResult) float64) float64 { return median(collect(rs, kindEddy, rate, f)) }
		b := func(f func(*streamResult) float64) float64 { return median(collect(rs, kindBaseline, rate, f)) }
		cpu := func(r *streamResult) float64 { return float64(r.cpuPerDel) }
		p99 := func(r *streamResult) float64 { return ms(r.app.quantile(.99)) }
		dps := func(r *streamResult) float64 { return r.perSec }
		if b(cpu) > 0 {
			fmt.Fprintf(w, "- %d records/s, eddy / baseline: deliveries/s %.2fx, server CPU per delivery %.2fx, append→recv p99 %.2fx\n",
				rate, e(dps)/b(dps), e(cpu)/b(cpu), e(p99)/max(b(p99), 1e-9))
		}
	}
	printStreamTargets(fl, rs, mems)
}

// printStreamTargets checks the figures against issue 3's targets.
func printStreamTargets(fl flags, rs []streamResult, mems []memResult) {
	w := fl.out
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, rate := range fl.rates {
		p99 := median(collect(rs, kindEddy, rate, func(r *streamResult) float64 { return ms(r.app.quantile(.99)) }))
		drops := slices.Max(append(collect(rs, kindEddy, rate, (*streamResult).drops), 0))
		cpu := median(collect(rs, kindEddy, rate, func(r *streamResult) float64 { return float64(r.cpuPerDel) / 1e3 }))
		dps := median(collect(rs, kindEddy, rate, func(r *streamResult) float64 { return r.perSec }))
		want := float64(rate * fl.clients)
		fmt.Fprintf(w, "- target at %d records/s (%.0f deliveries/s wanted, %.0f measured): p99 under 50 ms: %s (%.1f ms)",
			rate, want, dps, verdict(p99 < 50 && dps >= 0.95*want), p99)
		if rate*fl.clients <= 100000 {
			fmt.Fprintf(w, "; no drops: %s (%.0f, worst run); aim p99 under 10 ms: %s; aim about 5 µs CPU per delivery: %.1f µs",
				verdict(drops == 0), drops, verdict(p99 < 10), cpu)
		}
		fmt.Fprintln(w)
	}
	for _, m := range mems {
		if m.kind == kindEddy && m.clients >= 5000 {
			fmt.Fprintf(w, "- target at most 32 KiB RSS per idle client at %d clients: %s (%.1f KiB)\n",
				m.clients, verdict(m.perClient <= 32<<10), m.perClient/1024)
		}
	}
}
