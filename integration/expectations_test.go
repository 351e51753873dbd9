//go:build netns

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/nft"
)

// startWatch starts `ftpnft expectations --watch --json` for ns, writing
// its standard output to stdout, and returns once it says it is watching.
// done receives the result of its Wait; stderr returns what it has printed
// on standard error so far. The test's cleanup kills it.
func startWatch(t testing.TB, ns *Host, stdout io.Writer) (cmd *exec.Cmd, done <-chan error, stderr func() string) {
	t.Helper()
	return startCLI(t, stdout, "watching expectations", "expectations", "--watch", "--json", "--netns", ns.Path)
}

// startCLI starts ftpnft with args, writing its standard output to
// stdout, and returns once a line of its standard error contains ready.
// done receives the result of its Wait; stderr returns what it has printed
// on standard error so far. The test's cleanup kills it.
func startCLI(t testing.TB, stdout io.Writer, ready string, args ...string) (cmd *exec.Cmd, done <-chan error, stderr func() string) {
	t.Helper()
	cmd = exec.Command(ftpnftBin, args...)
	cmd.Stdout = stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var mu sync.Mutex
	var errText strings.Builder // guarded by mu
	stderr = func() string {
		mu.Lock()
		defer mu.Unlock()
		return errText.String()
	}
	exited := make(chan error, 1)
	isReady := make(chan struct{})
	var once sync.Once
	go func() {
		s := bufio.NewScanner(errPipe)
		for s.Scan() {
			mu.Lock()
			errText.WriteString(s.Text() + "\n")
			mu.Unlock()
			if strings.Contains(s.Text(), ready) {
				once.Do(func() { close(isReady) })
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-isReady:
	case err := <-exited:
		t.Fatalf("ftpnft %q exited early: %v\n%s", args, err, stderr())
	case <-time.After(10 * time.Second):
		t.Fatalf("ftpnft %q did not become ready", args)
	}
	return cmd, exited, stderr
}

// watchCLI runs `ftpnft expectations --watch --json` for ns and returns once
// it says it is watching. stop interrupts it (SIGINT) and returns the events
// it printed, checking that it exits 0 promptly.
func watchCLI(t testing.TB, ns *Host) (stop func() []map[string]any) {
	t.Helper()
	var out bytes.Buffer
	cmd, done, stderr := startWatch(t, ns, &out)
	return func() []map[string]any {
		t.Helper()
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch after SIGINT: %v\n%s", err, stderr())
			}
		case <-time.After(3 * time.Second):
			t.Fatal("watch did not stop within 3s of SIGINT")
		}
		var evs []map[string]any
		dec := json.NewDecoder(&out)
		for {
			var ev map[string]any
			if err := dec.Decode(&ev); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("watch output is not JSON lines: %v\n%s", err, out.String())
			}
			evs = append(evs, ev)
		}
		return evs
	}
}

// tuple reads a JSON tuple as "src sport dst dport".
func tuple(v any) string {
	m, _ := v.(map[string]any)
	return fmt.Sprintf("%v %v %v %v", m["src"], m["sport"], m["dst"], m["dport"])
}

// TestWatchFollowsSessions watches while passive and active sessions run over
// IPv4 and IPv6, and finds for each control connection an expectation (new),
// the data connection it admitted (related, to the expected port) and the
// expectation's end (destroy). The negative control: without the helper, the
// same sessions produce no expectation at all.
func TestWatchFollowsSessions(t *testing.T) {
	srv, cli := ftpPair(t)

	sessions := []struct {
		mode Mode
		url  string
	}{
		{PASV, URL(srv.V4, 21, "/hello.txt")},
		{PORT, URL(srv.V4, 21, "/hello.txt")},
		{EPSV, URL(srv.V6, 21, "/hello.txt")},
		{EPRT, URL(srv.V6, 21, "/hello.txt")},
	}
	stop := watchCLI(t, srv)
	for _, s := range sessions {
		if _, err := Curl(t, cli, s.mode, s.url, okTimeout); err != nil {
			t.Fatalf("%s: %v", s.mode, err)
		}
	}
	// The destroy of an expectation is reported when it is used; give the
	// kernel a moment to deliver the last events.
	time.Sleep(300 * time.Millisecond)
	evs := stop()

	type seen struct{ new, related, destroy bool }
	byMaster := map[string]*seen{}
	expectedPort := map[string]any{}
	for _, ev := range evs {
		if ev["helper"] != "ftp" || ev["proto"] != "tcp" {
			t.Errorf("event of another helper or protocol: %v", ev)
		}
		m := tuple(ev["master"])
		if byMaster[m] == nil {
			byMaster[m] = &seen{}
		}
		switch ev["event"] {
		case "new":
			byMaster[m].new = true
			expectedPort[m] = ev["expected"].(map[string]any)["dport"]
			if ev["timeout"].(float64) != 300 {
				t.Errorf("new expectation timeout %v, want 300", ev["timeout"])
			}
		case "destroy":
			byMaster[m].destroy = true
		case "related":
			byMaster[m].related = true
			if got := ev["flow"].(map[string]any)["dport"]; got != expectedPort[m] {
				t.Errorf("related flow to port %v, but the expectation was for %v: %v", got, expectedPort[m], ev)
			}
		default:
			t.Errorf("unexpected event %v", ev)
		}
	}
	if len(byMaster) != len(sessions) {
		t.Fatalf("saw %d control connections, want %d: %v", len(byMaster), len(sessions), evs)
	}
	for m, s := range byMaster {
		if !s.new || !s.related || !s.destroy {
			t.Errorf("control connection %s: new=%t related=%t destroy=%t", m, s.new, s.related, s.destroy)
		}
		if !strings.HasSuffix(m, " 21") {
			t.Errorf("master %s is not a connection to port 21", m)
		}
	}

	// Negative control: no helper, no expectations (active mode still works
	// for a server, since its data connections are outbound).
	mustFtpnft(t, "uninstall", "--netns", srv.Path)
	srv.NftApply(t, withoutHelper(t, nft.DefaultConfig()))
	stop = watchCLI(t, srv)
	if _, err := Curl(t, cli, PORT, URL(srv.V4, 21, "/hello.txt"), okTimeout); err != nil {
		t.Fatalf("active without helper: %v", err)
	}
	if _, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/"), blockedTimeout); err == nil {
		t.Fatal("passive listing without the helper succeeded")
	}
	if evs := stop(); len(evs) != 0 {
		t.Fatalf("without the helper the watch saw %v", evs)
	}
}

// TestListHeldExpectation lists the expectation of a session that sent PASV
// and waits without connecting, with the CLI (table and JSON) and the library.
func TestListHeldExpectation(t *testing.T) {
	srv, cli := ftpPair(t)

	out := mustFtpnft(t, "expectations", "--netns", srv.Path)
	if strings.TrimSpace(out) != "no expectations" {
		t.Fatalf("before any session: %q", out)
	}
	cli.Start(t, "bash", "-c", fmt.Sprintf(
		`exec 3<>/dev/tcp/%s/21 && printf 'USER anonymous\r\nPASS x\r\nPASV\r\n' >&3 && sleep 60`, srv.V4))

	var xs []conntrack.Expectation
	deadline := time.Now().Add(10 * time.Second)
	for len(xs) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		js := mustFtpnft(t, "expectations", "--json", "--netns", srv.Path)
		xs = nil
		if err := json.Unmarshal([]byte(js), &xs); err != nil {
			t.Fatalf("%v: %s", err, js)
		}
	}
	if len(xs) != 1 {
		t.Fatalf("want one held expectation, got %+v", xs)
	}
	x := xs[0]
	if x.Helper != "ftp" || x.Master.Src != cli.V4 || x.Master.Dst != srv.V4 || x.Master.DPort != 21 ||
		x.Expected.Dst != srv.V4 || x.Expected.DPort == 0 || x.Timeout == 0 || x.Timeout > 300 {
		t.Fatalf("held expectation: %+v", x)
	}
	table := mustFtpnft(t, "expectations", "--netns", srv.Path)
	if !strings.Contains(table, fmt.Sprintf("%s:* -> %s:%d", cli.V4, srv.V4, x.Expected.DPort)) || !strings.Contains(table, "TIME LEFT") {
		t.Fatalf("table output:\n%s", table)
	}
	lib, err := conntrack.List(context.Background(), conntrack.WithNetNS(srv.Path))
	if err != nil || len(lib) != 1 || lib[0].Expected != x.Expected {
		t.Fatalf("conntrack.List = %+v, %v", lib, err)
	}
	if other := mustFtpnft(t, "expectations", "--helper", "irc", "--netns", srv.Path); strings.TrimSpace(other) != "no expectations" {
		t.Fatalf("--helper irc listed %q", other)
	}
}

// TestWatchRecoversFromOverflow shrinks the watch socket's buffer, stalls the
// consumer during a burst of expectations (one control connection sending
// many PASV; each replaces the previous expectation), and checks that the
// loss is reported, the watch resynchronises, and events keep coming.
func TestWatchRecoversFromOverflow(t *testing.T) {
	srv, cli := ftpPair(t)

	var mu sync.Mutex
	var evs []conntrack.Event
	stall := make(chan struct{})
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- conntrack.Watch(ctx, func(e conntrack.Event) {
			<-stall
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		}, conntrack.WithNetNS(srv.Path), conntrack.WithReadBuffer(4096), conntrack.WithReady(func() { close(ready) }))
	}()
	t.Cleanup(cancel)
	<-ready

	const burst = 400
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/21 && printf 'USER anonymous\r\nPASS x\r\n' >&3 && for i in $(seq %d); do printf 'PASV\r\n' >&3; done && printf 'QUIT\r\n' >&3 && timeout 20 cat <&3 | grep -c '^227'`, srv.V4, burst)
	replies := strings.TrimSpace(cli.MustExec(t, "bash", "-c", script))
	if replies != fmt.Sprint(burst) {
		t.Fatalf("server answered %s of %d PASV", replies, burst)
	}
	close(stall)

	// After the loss the watch goes on: a transfer is seen as related.
	if _, err := Curl(t, cli, PASV, URL(srv.V4, 21, "/hello.txt"), okTimeout); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var lost, relatedAfterLoss bool
	for time.Now().Before(deadline) && !(lost && relatedAfterLoss) {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		lost, relatedAfterLoss = false, false
		for _, e := range evs {
			switch {
			case e.Type == conntrack.EventLost:
				lost = true
			case lost && e.Type == conntrack.EventRelated:
				relatedAfterLoss = true
			}
		}
		mu.Unlock()
	}
	mu.Lock()
	n := len(evs)
	mu.Unlock()
	if !lost {
		t.Fatalf("no lost event after a burst of %d expectations into a 4 KiB buffer (%d events seen)", burst, n)
	}
	if !relatedAfterLoss {
		t.Fatalf("no related event after the loss; the watch did not carry on (%d events)", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch ended with %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Watch did not return within 3s of cancel")
	}
	t.Logf("%d events reported for a burst of %d PASV (%d events from the kernel), with loss reported", n, burst, 2*burst)
}

// TestWatchEndsWhenNamespaceDeleted deletes the watched namespace: the CLI
// ends with exit 1 and says why.
func TestWatchEndsWhenNamespaceDeleted(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "gone")
	cmd := exec.Command(ftpnftBin, "expectations", "--watch", "--netns", h.Path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	h.Delete(t)
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("watch of a deleted namespace: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "network namespace was deleted") {
			t.Fatalf("stderr: %s", stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("watch still running 5s after its namespace was deleted\n%s", stderr.String())
	}
}

// TestWatchStopsWithoutLeaks cancels a library watch and checks that it
// returns promptly and leaves no goroutine behind.
func TestWatchStopsWithoutLeaks(t *testing.T) {
	RequireRoot(t)
	h := NewHost(t, "leak")
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- conntrack.Watch(ctx, func(conntrack.Event) {}, conntrack.WithNetNS(h.Path), conntrack.WithReady(func() { close(ready) }))
		}()
		<-ready
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Watch did not return within 2s of cancel")
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after five watches\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}
