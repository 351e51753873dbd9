package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs the command line and fails the test if it has not ended
// after a few seconds: a FIFO must not hang ftpnft.
func runWithin(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		c, o, e := runCLI(args...)
		done <- result{c, o, e}
	}()
	select {
	case r := <-done:
		return r.code, r.stdout, r.stderr
	case <-time.After(5 * time.Second):
		t.Fatalf("ftpnft %q still running after 5s", args)
		return 0, "", ""
	}
}

// An empty namespace never means the host: every command, and the config
// file, refuse it before anything reaches the kernel.
func TestEmptyNetNS(t *testing.T) {
	config := writeFile(t, t.TempDir(), "ftpnft.yaml", "netns: \"\"\nports: [21]\n")
	for _, args := range [][]string{
		{"install", "--netns", ""},
		{"install", "--netns="},
		{"install", "--dry-run", "--netns", ""},
		{"uninstall", "--netns", ""},
		{"status", "--netns", ""},
		{"status", "--json", "--netns", ""},
		{"render", "--netns", ""},
		{"expectations", "--netns", ""},
		{"expectations", "--watch", "--netns", ""},
		{"install", "--config", config},
		{"status", "--config", config},
	} {
		code, stdout, stderr := runWithin(t, args...)
		if code != exitUsage || !strings.Contains(stderr, `netns "": empty`) || stdout != "" {
			t.Errorf("ftpnft %q: exit %d, stdout %q, stderr %q; want exit 2 naming the empty netns", args, code, stdout, stderr)
		}
	}
}

// Files that are not regular files, or too large, are refused at once with
// exit 2 naming the file: devices that never end, FIFOs without a writer,
// directories.
func TestSpecialInputFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := writeFile(t, dir, "hostname", "host\n")
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxConfigSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"render", "--config", "/dev/zero"}, "config: /dev/zero: not a regular file (a character device)"},
		{[]string{"render", "--source-file", "/dev/zero"}, "source file: /dev/zero: not a regular file (a character device)"},
		{[]string{"render", "--config", fifo}, "config: " + fifo + ": not a regular file (a FIFO)"},
		{[]string{"render", "--source-file", fifo}, "source file: " + fifo + ": not a regular file (a FIFO)"},
		{[]string{"render", "--config", dir}, "not a regular file (a directory)"},
		{[]string{"render", "--config", big}, "file too large: 1048577 bytes, the limit is 1048576"},
		{[]string{"status", "--netns", fifo}, "not a network namespace: " + fifo + " is a FIFO"},
		{[]string{"status", "--netns", regular}, "not a network namespace: " + regular + " is a regular file"},
		{[]string{"expectations", "--netns", regular}, "not a network namespace"},
		{[]string{"expectations", "--netns", "/proc/self/ns/mnt"}, "is another kind of namespace"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runWithin(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) || stdout != "" {
			t.Errorf("ftpnft %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

// failingWriter fails every write, as /dev/full does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// Output that cannot be written fails the command (exit 1), naming the
// error.
func TestOutputErrors(t *testing.T) {
	for _, args := range [][]string{{"render"}, {"render", "--table", "other"}, {"help"}, {"render", "--role", "router"}} {
		var stderr bytes.Buffer
		code := run(context.Background(), args, failingWriter{}, &stderr)
		if code != exitFailure || !strings.Contains(stderr.String(), "write output: no space left on device") {
			t.Errorf("ftpnft %q to a full disk: exit %d, stderr %q; want exit 1", args, code, stderr.String())
		}
	}
}

// A config file holds one YAML document; anything after "---" is an error.
func TestConfigOneDocument(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"ports: [21]\n---\nports: [2121]\n", ":3: a second YAML document"},
		{"ports: [21]\n---\n: : garbage [\n", "after the first YAML document"},
	} {
		path := writeFile(t, dir, "c.yaml", tt.content)
		code, _, stderr := runCLI("render", "--config", path)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("config %q: exit %d, stderr %q; want %q", tt.content, code, stderr, tt.want)
		}
	}
	for _, ok := range []string{"---\nports: [2121]\n", "ports: [2121]\n---\n", "ports: [2121]\n...\n"} {
		path := writeFile(t, dir, "c.yaml", ok)
		if code, stdout, stderr := runCLI("render", "--config", path); code != exitOK || !strings.Contains(stdout, "dport 2121") {
			t.Errorf("config %q: exit %d, stderr %q", ok, code, stderr)
		}
	}
}

// A bad value is quoted in part: a 5 MB line does not come back as 5 MB of
// error message.
func TestLongValuesAreClipped(t *testing.T) {
	long := strings.Repeat("x", 5<<20)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"render", "--ports", long},
		{"render", "--policy", long},
		{"render", "--allow", long},
		{"render", "--source", long},
		{"render", "--max-conn-per-source", long},
		{"render", "--" + long},
		{"render", long},
		{"render", "--source-file", writeFile(t, dir, "s.txt", "192.0.2.0/24\n"+long+"\n")},
		{"render", "--config", writeFile(t, dir, "c.yaml", "policy: "+long+"\n")},
		{"render", "--config", "/" + strings.Repeat("d", 4000)},
		{"render", "--source-file", "/" + strings.Repeat("d", 4000)},
		{"render", "--block-file", "/" + strings.Repeat("d", 4000)},
		{"status", "--netns", long},
		{"expectations", "--helper", long},
		{long},
	} {
		code, _, stderr := runCLI(args...)
		if code != exitUsage || len(stderr) > 1000 {
			t.Errorf("ftpnft with a 5 MB value (%.30q...): exit %d, %d bytes of stderr: %.300q", args, code, len(stderr), stderr)
		}
	}
}

// blockedWriter blocks every write until release is closed; then it
// collects what is written.
type blockedWriter struct {
	release chan struct{}
	buf     bytes.Buffer
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	<-b.release
	return b.buf.Write(p)
}

// stall queues a first line and waits until lw's writer has taken it and
// stalls in its write: from then on the queue holds exactly watchQueue
// more. (Filled before the writer took one, a slot frees in the middle and
// a "lost" line takes it, which restarts the count: 84 of 100 dropped lines
// counted, seen under load.)
func stall(lw *lineWriter, line []byte) {
	lw.line(line)
	for len(lw.queue) > 0 {
		runtime.Gosched()
	}
}

// A watch whose reader stalls never blocks: lines beyond the queue are
// dropped and counted, the count is written before the next line once the
// reader reads again (or at the end), and closing does not wait for a
// stalled reader.
func TestLineWriterNeverBlocks(t *testing.T) {
	line := []byte("{\"event\":\"new\"}\n")
	w := &blockedWriter{release: make(chan struct{})}
	stopped := false
	lw := newLineWriter(w, lostEvents(true), func() { stopped = true })
	start := time.Now()
	stall(lw, line)
	for range watchQueue + 100 {
		lw.line(line) // would hang here if queuing blocked
	}
	if lw.dropped != 100 {
		t.Fatalf("%d lines dropped of %d beyond a queue of %d", lw.dropped, watchQueue+100, watchQueue)
	}
	begin := time.Now()
	if err := lw.close(); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(begin); waited < drainTime/2 || waited > 3*drainTime {
		t.Fatalf("close with a stalled reader waited %v, want about %v", waited, drainTime)
	}
	t.Logf("%d lines queued in %v with the reader stalled", watchQueue+100, begin.Sub(start))

	// The reader reads again: the drop count comes before the next line.
	w = &blockedWriter{release: make(chan struct{})}
	lw = newLineWriter(w, lostEvents(true), func() {})
	stall(lw, line)
	for range watchQueue + 10 {
		lw.line(line)
	}
	close(w.release)
	for len(lw.queue) > 0 {
		time.Sleep(time.Millisecond)
	}
	lw.line(line)
	if err := lw.close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(w.buf.String()), "\n")
	if n := len(lines); n < watchQueue+2 || lines[n-2] != `{"event":"lost","unwritten":10}` {
		t.Fatalf("%d lines, the last two %q", n, lines[max(n-2, 0):])
	}

	// Lines dropped at the very end are counted at close.
	w = &blockedWriter{release: make(chan struct{})}
	lw = newLineWriter(w, lostEvents(false), func() {})
	stall(lw, line)
	for range watchQueue + 3 {
		lw.line(line)
	}
	dropped := lw.dropped
	if dropped != 3 {
		t.Fatalf("%d lines dropped, want the 3 beyond a full queue", dropped)
	}
	close(w.release)
	for len(lw.queue) > 0 {
		time.Sleep(time.Millisecond)
	}
	lw.close()
	if !strings.HasSuffix(w.buf.String(), fmt.Sprintf("[LOST] %d events not written: the output was not read fast enough\n", dropped)) {
		t.Fatalf("the last drop count was not written: %q", w.buf.String()[max(0, w.buf.Len()-100):])
	}

	// A write error stops the watch and is returned.
	lw = newLineWriter(failingWriter{}, lostEvents(false), func() { stopped = true })
	lw.line(line)
	if err := lw.close(); !errors.Is(err, syscall.ENOSPC) || !stopped {
		t.Fatalf("write error: %v, stopped %v", err, stopped)
	}
}

// What a new user meets: the version, each command's own help, and a bad
// value in a config file named by its file and line.
func TestNewUser(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, _ := runCLI(args...)
		if code != exitOK || !strings.HasPrefix(stdout, "ftpnft ") || !strings.Contains(stdout, " go1.") {
			t.Errorf("ftpnft %q: exit %d, %q", args, code, stdout)
		}
	}
	for _, cmd := range []string{"install", "uninstall", "status", "render", "doctor", "expectations", "selftest"} {
		for _, args := range [][]string{{cmd, "--help"}, {"help", cmd}} {
			code, stdout, _ := runCLI(args...)
			if code != exitOK || !strings.HasPrefix(stdout, "Usage: ftpnft "+cmd) || strings.Contains(stdout, "ftpnft selftest            prove") {
				t.Errorf("ftpnft %q: exit %d, not the help of %s:\n%.300s", args, code, cmd, stdout)
			}
		}
	}
	if _, stdout, _ := runCLI("uninstall", "--help"); strings.Contains(stdout, "--ports") {
		t.Error("uninstall's help lists --ports, which it does not take")
	}
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"ports: [21]\npolicy: reject\n", `:2: key "policy": policy "reject": want drop or accept`},
		{"role: gateway\n", `:1: key "role": role "gateway"`},
		{"max-conn-per-source: -3\n", `:1: key "max-conn-per-source": invalid value "-3": want 0 or more`},
		{"\n\nsource: [192.0.2.1/24]\n", `:3: key "source": source 192.0.2.1/24: host bits set`},
	} {
		path := writeFile(t, dir, "c.yaml", tt.content)
		code, _, stderr := runCLI("render", "--config", path)
		if code != exitUsage || !strings.Contains(stderr, "config "+path+tt.want) {
			t.Errorf("config %q: exit %d, %q; want %q", tt.content, code, stderr, tt.want)
		}
	}
	// render never reaches a namespace.
	if code, stdout, stderr := runCLI("render", "--netns", "ftpnft-no-such-namespace"); code != exitOK || !strings.Contains(stdout, "table inet ftpnft") {
		t.Errorf("render --netns of a missing namespace: exit %d, %s", code, stderr)
	}
}
