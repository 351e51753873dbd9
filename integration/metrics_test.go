//go:build netns

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"gopkg.in/yaml.v3"
)

// Tests of `ftpnft daemon --metrics-listen` and `ftpnft sessions`. The
// daemon runs inside the server's namespace (ip netns exec, as the
// harness's Start does), so that its listener is there, and is scraped by
// curl run in the same namespace: neither the scrape nor the FTP traffic
// leaves the test's namespaces.

const (
	metricsPort    = 9842
	metricsTimeout = 10 * time.Second
)

// metricsDaemon is an `ftpnft daemon` started with Host.Start in host's
// namespace (without --netns: the table is managed there too).
type metricsDaemon struct {
	host *Host
	p    *proc
}

// startMetricsDaemon starts `ftpnft daemon args...` in h. The harness kills
// it in cleanup, and shows its log if the test failed.
func startMetricsDaemon(t testing.TB, h *Host, args ...string) *metricsDaemon {
	t.Helper()
	return &metricsDaemon{host: h, p: h.start(t, []string{"SSH_CONNECTION=", "NOTIFY_SOCKET="}, ftpnftBin, append([]string{"daemon"}, args...)...)}
}

// url is http://127.0.0.1:metricsPort/path.
func (d *metricsDaemon) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, path)
}

// healthz returns the HTTP status of /healthz, or 0 when nothing answered.
func (d *metricsDaemon) healthz(t testing.TB) int {
	t.Helper()
	out, _, _ := d.host.Exec(t, "curl", "-q", "-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", d.url("/healthz"))
	code, _ := strconv.Atoi(strings.TrimSpace(out))
	return code
}

// waitHealthz polls /healthz until it answers want.
func (d *metricsDaemon) waitHealthz(t testing.TB, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	got := 0
	for {
		if got = d.healthz(t); got == want {
			return
		}
		if d.p.exited() {
			t.Fatalf("the daemon exited (%v):\n%s", d.p.err, d.p.readOutput())
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz answered %d, not %d, for %v; daemon log:\n%s", got, want, within, d.p.readOutput())
		}
		time.Sleep(pollInterval)
	}
}

// waitWatching waits until a netfilter netlink socket in the daemon's
// namespace listens to new expectations (group NFNLGRP_CONNTRACK_EXP_NEW,
// 4: bit 0x8 of /proc/net/netlink's Groups): the daemon's watch. The
// kernel reports a connection's expectation events only if a listener was
// there when the connection began (nf_conntrack_events=2), so traffic
// before that would not be counted.
func (d *metricsDaemon) waitWatching(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(metricsTimeout)
	for {
		out := d.host.MustExec(t, "cat", "/proc/net/netlink")
		for _, line := range strings.Split(out, "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[1] != "12" {
				continue
			}
			if groups, err := strconv.ParseUint(f[3], 16, 32); err == nil && groups&0x8 != 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listener of expectation events in %s after %v:\n%s", d.host.Name, metricsTimeout, out)
		}
		time.Sleep(pollInterval)
	}
}

// scrape reads /metrics and returns its text.
func (d *metricsDaemon) scrape(t testing.TB) string {
	t.Helper()
	return d.host.MustExec(t, "curl", "-q", "-sS", "--fail", "--max-time", "10", d.url("/metrics"))
}

// signal sends sig to the daemon (ip netns exec became it: same pid).
func (d *metricsDaemon) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := d.p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// promSample is one line of the Prometheus text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics parses the Prometheus text format (comments skipped).
func parseMetrics(t testing.TB, text string) []promSample {
	t.Helper()
	var out []promSample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := promSample{labels: map[string]string{}, value: v}
		series := line[:i]
		name, rest, hasLabels := strings.Cut(series, "{")
		s.name = name
		if hasLabels {
			rest = strings.TrimSuffix(rest, "}")
			for rest != "" {
				k, after, ok := strings.Cut(rest, `="`)
				if !ok {
					t.Fatalf("metrics line %q: bad labels", line)
				}
				var val strings.Builder
				j := 0
				for ; j < len(after) && after[j] != '"'; j++ {
					if after[j] == '\\' && j+1 < len(after) {
						j++
						switch after[j] {
						case 'n':
							val.WriteByte('\n')
						default:
							val.WriteByte(after[j])
						}
						continue
					}
					val.WriteByte(after[j])
				}
				s.labels[k] = val.String()
				rest = strings.TrimPrefix(after[min(j+1, len(after)):], ",")
			}
		}
		out = append(out, s)
	}
	return out
}

// metricValue returns the value of the sample named name whose labels
// include those given as "key", "value" pairs, and whether there is one.
func metricValue(samples []promSample, name string, labels ...string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// mustMetric is metricValue that fails the test when there is no sample.
func mustMetric(t testing.TB, samples []promSample, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(samples, name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in the scrape", name, labels)
	}
	return v
}

// waitMetric scrapes until cond holds for the metric's value (absent: 0)
// and returns the last scrape.
func (d *metricsDaemon) waitMetric(t testing.TB, what string, cond func(float64) bool, name string, labels ...string) []promSample {
	t.Helper()
	deadline := time.Now().Add(metricsTimeout)
	for {
		samples := parseMetrics(t, d.scrape(t))
		v, _ := metricValue(samples, name, labels...)
		if cond(v) {
			return samples
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v is %v after %v, want %s; daemon log:\n%s", name, labels, v, metricsTimeout, what, d.p.readOutput())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timedScrape GETs /metrics from the daemon once, over a connection made
// inside its namespace (Host.Do) by this process: no curl, no ip netns
// exec. It returns how long it took, from the connect to the last byte of
// the body, and the body.
func (d *metricsDaemon) timedScrape(t testing.TB) (time.Duration, []byte) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	var c net.Conn
	start := time.Now()
	if err := d.host.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v\n%s", resp.Status, err, body)
	}
	return took, body
}

// cpuTime returns the CPU time (user and system) the daemon has used.
func (d *metricsDaemon) cpuTime(t testing.TB) time.Duration {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

// rss returns the daemon's resident memory in KiB.
func (d *metricsDaemon) rss(t testing.TB) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// metricsListening returns what listens on TCP port metricsPort in h (ss
// -Hltn).
func metricsListening(t testing.TB, h *Host) string {
	t.Helper()
	return strings.TrimSpace(h.MustExec(t, "ss", "-Hltn", fmt.Sprintf("sport = :%d", metricsPort)))
}

// TestMetricsCountTransfers runs the daemon with --metrics-listen in the
// server's namespace while passive and active transfers run over IPv4 and
// IPv6, and checks what a real scrape says: the expectation events cover
// every expectation and data connection, the rule counters equal those of
// `ftpnft status --json` read right after, promtool finds the exposition
// clean, a SIGHUP counts as a reload, and /healthz says 503 while another
// writer's table stands where ftpnft's was (the daemon leaves a table it
// did not create alone, so it cannot repair it: the window is as long as
// the test wants) and 200 once the daemon has put its own back. The
// negative control: without --metrics-listen nothing listens.
func TestMetricsCountTransfers(t *testing.T) {
	RequireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "promtool")
	srv, cli := NewPair(t)
	files := testFiles(t)
	StartVsftpd(t, srv, 21, files)

	d := startMetricsDaemon(t, srv, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	d.waitHealthz(t, 200, metricsTimeout)
	d.waitWatching(t)
	if l := metricsListening(t, srv); !strings.Contains(l, fmt.Sprintf("127.0.0.1:%d", metricsPort)) {
		t.Fatalf("ss: %q", l)
	}

	before := parseMetrics(t, d.scrape(t))
	for _, ev := range []string{"new", "destroy", "related"} {
		if v := mustMetric(t, before, "ftpnft_expectation_events_total", "event", ev); v != 0 {
			t.Fatalf("before any transfer: %s events = %v", ev, v)
		}
	}
	if v := mustMetric(t, before, "ftpnft_reconciles_total", "reason", "start"); v != 1 {
		t.Fatalf("reconciles{reason=start} = %v, want 1", v)
	}
	if v := mustMetric(t, before, "ftpnft_build_info"); v != 1 {
		t.Fatalf("ftpnft_build_info = %v", v)
	}

	// Every mode on both families: each mustFetch makes two data
	// connections (a listing and a download), each expected once.
	passive, active := 0, 0
	for _, tg := range targets(srv.V4, srv.V6) {
		for _, mode := range tg.modes {
			t.Run(fmt.Sprintf("%s/%s", tg.name, mode), func(t *testing.T) {
				mustFetch(t, cli, mode, tg.addr, 21, files)
			})
			if mode == PASV || mode == EPSV {
				passive += 2
			} else {
				active += 2
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	dataConns := passive + active

	// Events arrive through a watch: wait until the last one is in.
	after := d.waitMetric(t, fmt.Sprintf(">= %d", dataConns), func(v float64) bool { return v >= float64(dataConns) },
		"ftpnft_expectation_events_total", "event", "related")
	st, counts := readStatus(t, "--netns", srv.Path)
	if !st.Owned {
		t.Fatalf("status: table not owned: %+v", st)
	}
	newEvents := mustMetric(t, after, "ftpnft_expectation_events_total", "event", "new")
	related := mustMetric(t, after, "ftpnft_expectation_events_total", "event", "related")
	t.Logf("%d data connections (%d passive, %d active): events new=%v related=%v destroy=%v", dataConns, passive, active,
		newEvents, related, mustMetric(t, after, "ftpnft_expectation_events_total", "event", "destroy"))
	if newEvents < float64(dataConns) {
		t.Errorf("expectation events new = %v, want >= %d (one expectation per data connection)", newEvents, dataConns)
	}
	if lost := mustMetric(t, after, "ftpnft_expectation_events_lost_total"); lost != 0 {
		t.Errorf("events lost: %v", lost)
	}
	for _, c := range []struct {
		chain, rule string
		least       int
	}{
		{"input", "related ftp data", passive},                 // the first packet of each passive data connection
		{"prerouting", "assign ftp helper port 21", dataConns}, // each control connection's first packet
	} {
		scraped := mustMetric(t, after, "ftpnft_rule_packets_total", "chain", c.chain, "rule", c.rule)
		status, ok := counts[c.chain+": "+c.rule]
		if !ok {
			t.Fatalf("status has no counter %q: %v", c.chain+": "+c.rule, counts)
		}
		t.Logf("%s: %s: scrape %v packets, status %d", c.chain, c.rule, scraped, status)
		if scraped != float64(status) {
			t.Errorf("%s: %s: scrape says %v packets, status right after %d (no traffic between them)", c.chain, c.rule, scraped, status)
		}
		if scraped < float64(c.least) {
			t.Errorf("%s: %s: %v packets, want >= %d", c.chain, c.rule, scraped, c.least)
		}
		if b := mustMetric(t, after, "ftpnft_rule_bytes_total", "chain", c.chain, "rule", c.rule); b < scraped*40 {
			t.Errorf("%s: %s: %v bytes for %v packets", c.chain, c.rule, b, scraped)
		}
	}
	for _, name := range []string{"ftpnft_expectations_limit", "ftpnft_conntrack_entries", "ftpnft_conntrack_entries_limit"} {
		if v := mustMetric(t, after, name); v <= 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
	if v := mustMetric(t, after, "ftpnft_expectations", "helper", "ftp"); v < 0 {
		t.Errorf("ftpnft_expectations{helper=ftp} = %v", v)
	}

	// promtool's lint of the exposition: silent, exit 0.
	text := d.scrape(t)
	out, stderr, err := runCommand(execTimeout, strings.NewReader(text), nil, "promtool", "check", "metrics")
	if err != nil || len(out) != 0 || len(stderr) != 0 {
		t.Errorf("promtool check metrics: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}

	// SIGHUP: a reload, counted as one.
	d.signal(t, syscall.SIGHUP)
	reloaded := d.waitMetric(t, "1", func(v float64) bool { return v == 1 }, "ftpnft_reconciles_total", "reason", "reload")
	if v := mustMetric(t, reloaded, "ftpnft_config_last_reload_successful"); v != 1 {
		t.Errorf("ftpnft_config_last_reload_successful = %v after a good reload", v)
	}

	// Another writer replaces the table, in one batch, with one of its
	// own: the daemon refuses to touch a table it did not create, so
	// /healthz says 503 and the failed applies are counted, for as long
	// as that table stands. Once it is gone, the daemon's retry puts
	// its own back: 200.
	errsBefore := mustMetric(t, reloaded, "ftpnft_reconcile_errors_total")
	srv.NftApply(t, "delete table inet ftpnft\nadd table inet ftpnft\n")
	d.waitHealthz(t, 503, metricsTimeout)
	failing := d.waitMetric(t, fmt.Sprintf("> %v", errsBefore), func(v float64) bool { return v > errsBefore }, "ftpnft_reconcile_errors_total")
	if code := d.healthz(t); code != 503 {
		t.Fatalf("/healthz said %d with another writer's table in place", code)
	}
	body, _, _ := srv.Exec(t, "curl", "-q", "-s", "--max-time", "5", d.url("/healthz"))
	drift, _ := metricValue(failing, "ftpnft_reconciles_total", "reason", "drift")
	retries, _ := metricValue(failing, "ftpnft_reconciles_total", "reason", "retry")
	t.Logf("with another writer's table: /healthz 503 %q, reconcile errors %v (drift %v, retry %v)", strings.TrimSpace(body),
		mustMetric(t, failing, "ftpnft_reconcile_errors_total"), drift, retries)
	srv.NftApply(t, "delete table inet ftpnft\n")
	start := time.Now()
	d.waitHealthz(t, 200, 70*time.Second) // the retries back off: 250 ms, doubling
	t.Logf("/healthz 200 again %v after the foreign table went", time.Since(start).Round(time.Millisecond))
	if st, _ := readStatus(t, "--netns", srv.Path); !st.Owned {
		t.Fatalf("after the repair the table is not ftpnft's: %+v", st)
	}
	if v := mustMetric(t, parseMetrics(t, d.scrape(t)), "ftpnft_last_reconcile_success_timestamp_seconds"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last reconcile success at %v", time.Unix(int64(v), 0))
	}

	// SIGTERM ends it with exit 0 and the listener with it.
	d.signal(t, syscall.SIGTERM)
	select {
	case <-d.p.done:
		if d.p.err != nil {
			t.Fatalf("daemon after SIGTERM: %v\n%s", d.p.err, d.p.readOutput())
		}
	case <-time.After(metricsTimeout):
		t.Fatal("daemon still running after SIGTERM")
	}
	if l := metricsListening(t, srv); l != "" {
		t.Fatalf("after the daemon stopped, something listens: %q", l)
	}

	// Negative control: the same daemon without --metrics-listen.
	plain := startMetricsDaemon(t, srv)
	deadline := time.Now().Add(metricsTimeout)
	for !strings.Contains(plain.p.readOutput(), "msg=starting") {
		if plain.p.exited() || time.Now().After(deadline) {
			t.Fatalf("daemon without --metrics-listen did not start:\n%s", plain.p.readOutput())
		}
		time.Sleep(pollInterval)
	}
	// It listens before it logs "starting" when it listens at all.
	if l := metricsListening(t, srv); l != "" {
		t.Fatalf("without --metrics-listen something listens on %d: %q", metricsPort, l)
	}
	if code := plain.healthz(t); code != 0 {
		t.Fatalf("without --metrics-listen /healthz answered %d", code)
	}
	if strings.Contains(plain.p.readOutput(), "serving metrics") {
		t.Fatalf("without --metrics-listen the daemon says it serves metrics:\n%s", plain.p.readOutput())
	}
}

// TestMetricsContribMatchesScrape holds the alerting rules
// (contrib/prometheus) and the Grafana dashboard (contrib/grafana) to a
// real scrape of a daemon with every kind of rule (roles server and router,
// a DNAT, an allowlist): every metric they name is in the scrape, every
// rule they select by name or pattern exists, and every expression parses
// (promtool check rules). The dashboard has the Prometheus data source
// variable its panels use.
func TestMetricsContribMatchesScrape(t *testing.T) {
	RequireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "promtool")
	h := NewHost(t, "mx")
	d := startMetricsDaemon(t, h, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--role", "server,router", "--dnat", "2122=10.0.0.5:21", "--source", "10.0.0.0/8")
	d.waitHealthz(t, 200, metricsTimeout)
	samples := parseMetrics(t, d.scrape(t))
	names := map[string]bool{}
	labels := map[string]map[string]bool{} // label -> values seen
	for _, s := range samples {
		names[s.name] = true
		for k, v := range s.labels {
			if labels[k] == nil {
				labels[k] = map[string]bool{}
			}
			labels[k][v] = true
		}
	}

	// The expressions, by where they come from.
	exprs := map[string]string{}
	raw, err := os.ReadFile("../contrib/prometheus/ftpnft-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var alerts struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &alerts); err != nil {
		t.Fatalf("ftpnft-alerts.yml: %v", err)
	}
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	raw, err = os.ReadFile("../contrib/grafana/ftpnft-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
		Panels []struct {
			ID         int
			Type       string
			Title      string
			Datasource *struct{ Type, UID string }
			Targets    []struct {
				Expr, RefID string
				Datasource  *struct{ Type, UID string }
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("ftpnft-dashboard.json: %v", err)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("dashboard schemaVersion %d", dash.SchemaVersion)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct {
		Name, Type string
		Query      any
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("dashboard: no Prometheus data source variable: %+v", dash.Templating.List)
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("dashboard: panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("dashboard: panel %q: data source %+v, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			// Grafana's variables, as a query would have them.
			e := strings.NewReplacer("$instance", ".+", "$__rate_interval", "5m", "$__range", "1h").Replace(q.Expr)
			exprs[fmt.Sprintf("panel %q %s", p.Title, q.RefID)] = e
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found", len(exprs))
	}

	metricName := regexp.MustCompile(`\bftpnft_[a-z0-9_]+`)
	matcher := regexp.MustCompile(`\b(rule|event|set|chain|helper)\s*(=~|=)\s*"([^"]*)"`)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var check []rule
	for where, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			if !names[n] {
				t.Errorf("%s: %s is not in the scrape", where, n)
			}
		}
		for _, m := range matcher.FindAllStringSubmatch(e, -1) {
			re := regexp.MustCompile("^(?:" + regexp.QuoteMeta(m[3]) + ")$")
			if m[2] == "=~" {
				re = regexp.MustCompile("^(?:" + m[3] + ")$")
			}
			found := false
			for v := range labels[m[1]] {
				found = found || re.MatchString(v)
			}
			if !found {
				t.Errorf("%s: no %s label in the scrape matches %s%s%q", where, m[1], m[1], m[2], m[3])
			}
		}
		check = append(check, rule{Record: "check:" + strconv.Itoa(len(check)), Expr: e})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []map[string]any{{"name": "check", "rules": check}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "exprs.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, err := runCommand(execTimeout, nil, nil, "promtool", "check", "rules", file); err != nil {
		t.Errorf("promtool check rules of the %d expressions: %v\n%s%s", len(check), err, stdout, stderr)
	}
	t.Logf("%d expressions (alerts and dashboard) checked against a scrape of %d samples", len(exprs), len(samples))
}

// sessionsJSON runs `ftpnft sessions --netns NAME --json` and decodes it.
// The last output is kept for the test's log.
func sessionsJSON(t *testing.T, srv *Host, last *string) []conntrack.Session {
	t.Helper()
	code, out, stderr := ftpnft(t, "sessions", "--netns", srv.Name, "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("ftpnft sessions --json: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	var ss []conntrack.Session
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("sessions --json: %v\n%s", err, out)
	}
	*last = out
	return ss
}

// clientData finds the session of cli's control connection to srv:21 and
// its one data connection.
func clientData(ss []conntrack.Session, srv, cli *Host) (conntrack.Session, conntrack.DataConnection, bool) {
	for _, s := range ss {
		if s.Control.Src == cli.V4 && s.Control.Dst == srv.V4 && s.Control.DPort == 21 && len(s.Data) == 1 {
			return s, s.Data[0], true
		}
	}
	return conntrack.Session{}, conntrack.DataConnection{}, false
}

// TestSessionsShowGrowingTransfer: a passive download slowed to 20 Mbit/s
// (tbf on the server's link) is in flight while `ftpnft sessions --json`
// runs twice a second apart. With conntrack's accounting on, the client's
// session is listed with its data connection, passive, and the bytes (and
// packets) grow between the two calls, mostly from the server; the text
// output lists the same. The negative control, accounting off: the same
// session and data connection, with 0 packets and 0 bytes, and the text
// output says on stderr how to turn accounting on.
func TestSessionsShowGrowingTransfer(t *testing.T) {
	RequireRoot(t)
	requireTool(t, "tc")
	requireTool(t, "curl")
	for _, acct := range []int{1, 0} {
		t.Run(fmt.Sprintf("nf_conntrack_acct=%d", acct), func(t *testing.T) {
			srv, cli := NewPair(t)
			srv.MustExec(t, "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_acct=%d", acct))
			ftp := StartVsftpd(t, srv, 21, map[string][]byte{"slow.bin": nil})
			// 32 MiB, sparse: 13 s at 20 Mbit/s.
			if err := os.Truncate(filepath.Join(ftp.Root, "slow.bin"), 32<<20); err != nil {
				t.Fatal(err)
			}
			mustFtpnft(t, "install", "--netns", srv.Path)
			srv.MustExec(t, "tc", "qdisc", "add", "dev", "eth-cli", "root", "tbf", "rate", "20mbit", "burst", "32kbit", "latency", "400ms")
			var js string
			if ss := sessionsJSON(t, srv, &js); len(ss) != 0 {
				t.Fatalf("sessions before any client: %+v", ss)
			}
			download := cli.start(t, nil, "curl", "-q", "-sS", "--ftp-pasv", "--disable-epsv", "--no-ftp-skip-pasv-ip",
				"-o", "/dev/null", URL(srv.V4, 21, "/slow.bin"))

			// The data connection, once it carries something.
			var first conntrack.DataConnection
			var session conntrack.Session
			deadline := time.Now().Add(metricsTimeout)
			for {
				s, dc, ok := clientData(sessionsJSON(t, srv, &js), srv, cli)
				if ok && (acct == 0 || dc.Bytes > 0) {
					session, first = s, dc
					break
				}
				if download.exited() || time.Now().After(deadline) {
					t.Fatalf("no data connection of the client's session listed (download exited: %t)\n%s", download.exited(), download.readOutput())
				}
				time.Sleep(100 * time.Millisecond)
			}
			start := time.Now()
			time.Sleep(time.Second)
			s2, second, ok := clientData(sessionsJSON(t, srv, &js), srv, cli)
			took := time.Since(start)
			if download.exited() {
				t.Fatalf("the download ended before the second call: too fast for the test\n%s", download.readOutput())
			}
			if !ok || s2.Control != session.Control || second.Flow != first.Flow {
				t.Fatalf("second call: session %+v, data %+v; first: %+v, %+v", s2, second, session, first)
			}
			t.Logf("session %s (helper %s): data %s %s: %d packets %d bytes, %v later %d packets %d bytes (%d orig, %d reply): %.1f Mbit/s",
				session.Control, session.Helper, first.Flow, first.Mode, first.Packets, first.Bytes, took.Round(time.Millisecond),
				second.Packets, second.Bytes, second.BytesOrig, second.BytesReply, float64(second.Bytes-first.Bytes)*8/took.Seconds()/1e6)
			if session.Helper != "ftp" || first.Mode != "passive" || first.Flow.Src != cli.V4 || first.Flow.Dst != srv.V4 || first.Flow.DPort < 1024 {
				t.Fatalf("session %+v, data %+v: want the client's passive data connection to the server", session, first)
			}

			// The text output lists the same session and data connection.
			code, text, stderr := ftpnft(t, "sessions", "--netns", srv.Name)
			if code != 0 {
				t.Fatalf("ftpnft sessions: exit %d\n%s%s", code, text, stderr)
			}
			t.Logf("ftpnft sessions --json (second call):\n%sftpnft sessions:\n%sstderr: %q", js, text, stderr)
			lines := strings.Split(text, "\n")
			if !strings.HasPrefix(lines[0], "CONTROL") || !strings.Contains(text, session.Control.String()) {
				t.Fatalf("text output lacks the control connection %s:\n%s", session.Control, text)
			}
			i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, first.Flow.String()) })
			if i < 0 {
				t.Fatalf("text output lacks the data connection %s:\n%s", first.Flow, text)
			}
			f := strings.Fields(lines[i])
			textBytes, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
			if f[len(f)-3] != "passive" {
				t.Fatalf("text output: data line %q, want passive", lines[i])
			}

			hint := fmt.Sprintf("ip netns exec %s sysctl -w net.netfilter.nf_conntrack_acct=1", srv.Name)
			switch acct {
			case 1:
				if second.Bytes <= first.Bytes || second.Packets <= first.Packets {
					t.Errorf("bytes %d -> %d, packets %d -> %d: the transfer's counters did not grow", first.Bytes, second.Bytes, first.Packets, second.Packets)
				}
				if second.BytesReply <= second.BytesOrig || second.Bytes != second.BytesOrig+second.BytesReply {
					t.Errorf("download: %d bytes orig, %d reply, %d in all", second.BytesOrig, second.BytesReply, second.Bytes)
				}
				if textBytes < second.Bytes {
					t.Errorf("text output says %d bytes, after JSON said %d", textBytes, second.Bytes)
				}
				if stderr != "" {
					t.Errorf("with accounting on, sessions said on stderr: %q", stderr)
				}
			case 0:
				for _, dc := range []conntrack.DataConnection{first, second} {
					if dc.Packets != 0 || dc.Bytes != 0 || dc.BytesOrig != 0 || dc.BytesReply != 0 {
						t.Errorf("accounting off, yet %+v", dc)
					}
				}
				if textBytes != 0 {
					t.Errorf("accounting off, yet the text output says %d bytes", textBytes)
				}
				if !strings.Contains(stderr, "nf_conntrack_acct=0") || !strings.Contains(stderr, hint) {
					t.Errorf("accounting off: stderr %q, want the hint %q", stderr, hint)
				}
			}
		})
	}
}
