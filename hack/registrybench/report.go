package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

func readJSON[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(b, &v)
	return v, err
}

// readRuns reads comma-separated result files of the same registry.
func readRuns[T any](list string) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(list, ",") {
		v, err := readJSON[T](f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRuns(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.*f", prec, x)
	}
	return strings.Join(parts, " ")
}

func runReport(args []string) error {
	set := flag.NewFlagSet("report", flag.ContinueOnError)
	title := set.String("title", "", "heading")
	ppA := set.String("a", "", "pushpull result files of registry A (comma-separated runs)")
	ppB := set.String("b", "", "pushpull result files of registry B; ratios are A/B")
	gcA := set.String("gc-a", "", "GC result files of collector A (comma-separated runs)")
	gcB := set.String("gc-b", "", "GC result files of collector B")
	if err := set.Parse(args); err != nil {
		return err
	}
	if *title != "" {
		fmt.Printf("### %s\n\n", *title)
	}
	if *ppA != "" {
		if err := reportPushPull(*ppA, *ppB); err != nil {
			return err
		}
	}
	if *gcA != "" {
		if err := reportGC(*gcA, *gcB); err != nil {
			return err
		}
	}
	return nil
}

// merged is all runs of one registry.
type merged struct {
	label         string
	push, pull    Phase
	pushR, pullR  []float64 // MiB/s of each run
	images, conc  int
	rounds, nruns int
}

func mergeRuns(list string) (merged, error) {
	runs, err := readRuns[PushPull](list)
	if err != nil {
		return merged{}, err
	}
	m := merged{label: runs[0].Label, images: runs[0].Images, conc: runs[0].Concurrency,
		rounds: runs[0].PullRounds, nruns: len(runs)}
	for _, r := range runs {
		m.push.merge(r.Push)
		m.pull.merge(r.Pull)
		m.pushR = append(m.pushR, r.Push.MiBps)
		m.pullR = append(m.pullR, r.Pull.MiBps)
	}
	return m, nil
}

func reportPushPull(listA, listB string) error {
	a, err := mergeRuns(listA)
	if err != nil {
		return err
	}
	b, err := mergeRuns(listB)
	if err != nil {
		return err
	}
	fmt.Printf("Push/pull: %d images x 3 layers (1-4 MiB, seeded), %d images in flight, %d pull rounds, %d run(s) each\n",
		a.images, a.conc, a.rounds, a.nruns)
	fmt.Printf("  same go-containerregistry client; MiB/s = all bytes / all wall time over the runs;\n")
	fmt.Printf("  latency = one HTTP request (ping excluded), start of round trip to end of response body\n\n")
	fmt.Printf("%-5s %-26s %6s %8s %8s %9s %9s %5s  %s\n", "phase", "registry", "images", "MiB", "MiB/s", "p50 ms", "p99 ms", "fail", "MiB/s per run")
	for _, ph := range []string{"push", "pull"} {
		pa, pb, ra, rb := a.push, b.push, a.pushR, b.pushR
		if ph == "pull" {
			pa, pb, ra, rb = a.pull, b.pull, a.pullR, b.pullR
		}
		for _, x := range []struct {
			label string
			p     Phase
			runs  []float64
		}{{a.label, pa, ra}, {b.label, pb, rb}} {
			fmt.Printf("%-5s %-26s %6d %8.1f %8.1f %9.2f %9.2f %5d  %s\n", ph, x.label, x.p.Images,
				float64(x.p.Bytes)/(1<<20), x.p.MiBps, x.p.All.P50ms, x.p.All.P99ms, x.p.Failed, fmtRuns(x.runs, 1))
		}
		fmt.Printf("%-5s %-26s %6s %8s %8s %9s %9s\n", ph, "ratio "+a.label+"/"+b.label, "", "",
			ratio(pa.MiBps, pb.MiBps), ratio(pa.All.P50ms, pb.All.P50ms), ratio(pa.All.P99ms, pb.All.P99ms))
	}
	fmt.Printf("  (MiB/s ratio > 1 and latency ratio < 1 mean %s is faster)\n", a.label)
	fmt.Printf("\nPer request class, p50 / p99 ms (requests):\n")
	for _, ph := range []string{"push", "pull"} {
		pa, pb := a.push, b.push
		if ph == "pull" {
			pa, pb = a.pull, b.pull
		}
		classes := map[string]bool{}
		for c := range pa.Micros {
			classes[c] = true
		}
		for c := range pb.Micros {
			classes[c] = true
		}
		for _, c := range slices.Sorted(maps.Keys(classes)) {
			only := func(k string) bool { return k == c }
			la, lb := pa.latency(only), pb.latency(only)
			fmt.Printf("  %-4s %-14s %-10s %8.2f / %8.2f (%4d)   %-10s %8.2f / %8.2f (%4d)\n", ph, c,
				a.label, la.P50ms, la.P99ms, la.Requests, b.label, lb.P50ms, lb.P99ms, lb.Requests)
		}
	}
	fmt.Println()
	return nil
}

func reportGC(listA, listB string) error {
	fmt.Printf("Garbage collection over identical copies of one store (a fresh copy per run;\n")
	fmt.Printf("blob data files counted before/after; seconds = wall time of the collector process):\n\n")
	fmt.Printf("%-26s %8s %8s %8s %8s  %-20s %s\n", "collector", "median s", "before", "after", "deleted", "seconds per run", "collector's own report (last run)")
	var med [2]float64
	var labels [2]string
	for i, list := range []string{listA, listB} {
		runs, err := readRuns[GC](list)
		if err != nil {
			return err
		}
		var secs []float64
		for _, r := range runs {
			secs = append(secs, r.Seconds)
		}
		last := runs[len(runs)-1]
		med[i], labels[i] = median(secs), last.Label
		fmt.Printf("%-26s %8.2f %8d %8d %8d  %-20s %s\n", last.Label, med[i], last.BlobsBefore, last.BlobsAfter,
			last.BlobsBefore-last.BlobsAfter, fmtRuns(secs, 2), last.Reported)
	}
	fmt.Printf("%-26s %8s  (< 1 means %s is faster)\n\n", "ratio "+labels[0]+"/"+labels[1], ratio(med[0], med[1]), labels[0])
	return nil
}
