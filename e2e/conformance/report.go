package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Spec is one spec's outcome in a ginkgo JUnit report.
type Spec struct {
	Name   string // "[sig-node] Pods should ... [Conformance]"
	SIG    string // "sig-node"; "other" when the name carries none
	Status string // passed, failed, skipped (or pending, timedout, ...)
	// FirstError is the first line of the failure message.
	FirstError string
	Duration   time.Duration
}

type junitSuites struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

var sigRE = regexp.MustCompile(`\[(sig-[a-z0-9-]+)\]`)

// ParseJUnit reads a ginkgo JUnit report. Specs that the focus did not
// select are left out (ginkgo lists every spec of the suite, most of them
// skipped); suite-level nodes (BeforeSuite, AfterSuite) are kept when they
// failed, under SIG "suite".
func ParseJUnit(r io.Reader, focus, skip *regexp.Regexp) ([]Spec, error) {
	var s junitSuites
	if err := xml.NewDecoder(r).Decode(&s); err != nil {
		return nil, fmt.Errorf("JUnit report: %w", err)
	}
	var specs []Spec
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			sp := Spec{Name: strings.TrimPrefix(c.Name, "[It] "), Status: caseStatus(c), Duration: time.Duration(c.Time * float64(time.Second))}
			if !strings.HasPrefix(c.Name, "[It] ") {
				if sp.Status != "failed" {
					continue
				}
				sp.SIG = "suite"
			} else if (focus != nil && !focus.MatchString(sp.Name)) || (skip != nil && skip.MatchString(sp.Name)) {
				continue
			}
			if m := sigRE.FindStringSubmatch(sp.Name); sp.SIG == "" && m != nil {
				sp.SIG = m[1]
			} else if sp.SIG == "" {
				sp.SIG = "other"
			}
			switch {
			case c.Failure != nil:
				sp.FirstError = firstLine(c.Failure.Message, c.Failure.Text)
			case c.Error != nil:
				sp.FirstError = firstLine(c.Error.Message, c.Error.Text)
			}
			specs = append(specs, sp)
		}
	}
	return specs, nil
}

// MergeSpecs joins the reports of a run's passes (PARALLEL: the parallel
// pass, then the serial one), in which each spec ran once and was skipped
// in the other: a spec's outcome is the pass that ran it.
func MergeSpecs(passes ...[]Spec) []Spec {
	var out []Spec
	at := map[string]int{}
	for _, specs := range passes {
		for _, sp := range specs {
			i, seen := at[sp.Name]
			switch {
			case !seen || sp.SIG == "suite":
				at[sp.Name] = len(out)
				out = append(out, sp)
			case out[i].Status == "skipped" && sp.Status != "skipped":
				out[i] = sp
			}
		}
	}
	return out
}

func caseStatus(c junitCase) string {
	switch {
	case c.Status != "" && c.Status != "timedout" && c.Status != "panicked" && c.Status != "interrupted" && c.Status != "aborted":
		return c.Status
	case c.Status != "":
		return "failed"
	case c.Failure != nil || c.Error != nil:
		return "failed"
	case c.Skipped != nil:
		return "skipped"
	}
	return "passed"
}

func firstLine(texts ...string) string {
	for _, t := range texts {
		for _, l := range strings.Split(t, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				if len(l) > 300 {
					l = l[:300] + "..."
				}
				return l
			}
		}
	}
	return ""
}

// issueOf names the open issue that builds the controller a failing spec
// needs, or "" when the failure is in a part that exists.
func issueOf(spec string) string {
	for _, m := range owners {
		if m.re.MatchString(spec) {
			return m.issue
		}
	}
	return ""
}

var owners = []struct {
	re    *regexp.Regexp
	issue string
}{
	{regexp.MustCompile(`StatefulSet|Daemon ?[Ss]et|\bJob\b|CronJob|TTL|DisruptionController|PodDisruptionBudget`), "issue 17 (workload controllers II: StatefulSet, DaemonSet, Job, CronJob, disruption)"},
	{regexp.MustCompile(`ResourceQuota|CertificateSigningRequest|certificates`), "issue 18 (rest of kube-controller-manager: quota, certificates)"},
	{regexp.MustCompile(`PersistentVolume|PVC|StorageClass|VolumeAttachment`), "issue 19 (persistent storage)"},
	{regexp.MustCompile(`HorizontalPodAutoscal|\bHPA\b`), "issue 22 (resource metrics, HPA)"},
}

// Run describes one conformance run for its report.
type Run struct {
	Commit, Focus, Skip, Machine string
	Servers, Agents              int
	// Parallel is the number of e2e.test processes of the parallel pass
	// (1: one process ran every spec).
	Parallel int
	Started  time.Time
	Duration time.Duration
	Images   []Image
	Specs    []Spec
}

// WriteReport writes the run's Markdown report: a table per SIG, then every
// failure with its first error line, those another issue owns apart.
func WriteReport(w io.Writer, r Run) error {
	type row struct{ passed, failed, skipped int }
	rows := map[string]*row{}
	var total row
	for _, s := range r.Specs {
		if rows[s.SIG] == nil {
			rows[s.SIG] = &row{}
		}
		switch s.Status {
		case "passed":
			rows[s.SIG].passed++
			total.passed++
		case "skipped", "pending":
			rows[s.SIG].skipped++
			total.skipped++
		default:
			rows[s.SIG].failed++
			total.failed++
		}
	}
	sigs := make([]string, 0, len(rows))
	for k := range rows {
		sigs = append(sigs, k)
	}
	sort.Strings(sigs)
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Conformance run %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	p("- commit: %s\n- cluster: %d server(s), %d agent(s), each in its own network namespace\n", r.Commit, r.Servers, r.Agents)
	p("- machine: %s\n- focus: `%s`\n- skip: `%s`\n- duration: %s\n", r.Machine, r.Focus, r.Skip, r.Duration.Round(time.Second))
	if r.Parallel > 1 {
		p("- e2e.test: %d processes for the specs not marked [Serial], then one process for those\n", r.Parallel)
	}
	p("\n")
	p("| SIG | passed | failed | skipped |\n|---|---:|---:|---:|\n")
	for _, s := range sigs {
		p("| %s | %d | %d | %d |\n", s, rows[s].passed, rows[s].failed, rows[s].skipped)
	}
	p("| **total** | **%d** | **%d** | **%d** |\n\n", total.passed, total.failed, total.skipped)
	writeFailures(w, r.Specs)
	p("## Images\n\n")
	for _, im := range r.Images {
		note := "built from upstream sources"
		if im.StandIn != "" {
			note = "stand-in: " + im.StandIn
		}
		p("- `%s/%s`: %s\n", registryDefaults[im.Registry], im.Path, note)
	}
	return nil
}

func writeFailures(w io.Writer, specs []Spec) {
	byOwner := map[string][]Spec{}
	for _, s := range specs {
		if s.Status == "passed" || s.Status == "skipped" || s.Status == "pending" {
			continue
		}
		byOwner[issueOf(s.Name)] = append(byOwner[issueOf(s.Name)], s)
	}
	owners := make([]string, 0, len(byOwner))
	for k := range byOwner {
		owners = append(owners, k)
	}
	sort.Strings(owners) // "" (Keelson's own parts) first
	for _, o := range owners {
		if o == "" {
			fmt.Fprintf(w, "## Failures in parts that exist\n\n")
		} else {
			fmt.Fprintf(w, "## Failures that need %s\n\n", o)
		}
		list := byOwner[o]
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		for _, s := range list {
			fmt.Fprintf(w, "- %s (%s)\n  `%s`\n", s.Name, s.Duration.Round(time.Second), strings.ReplaceAll(s.FirstError, "`", "'"))
		}
		fmt.Fprintln(w)
	}
}

// WriteReportFile writes the report to path.
func WriteReportFile(path string, r Run) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := WriteReport(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
