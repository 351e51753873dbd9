package selftest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPeerTransfers drives a peer over its line protocol, without
// namespaces or root: the built-in server on loopback and the built-in client
// in all four modes, IPv4 and IPv6 as the modes allow.
func TestPeerTransfers(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Peer(inR, outW); outW.Close() }()
	p := &peer{in: inW, out: bufio.NewScanner(outR)} // the parent's side, without a process
	do := func(req request) reply {
		t.Helper()
		rep, err := p.do(req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		return rep
	}
	const size = 300000
	port := freePort(t)
	if rep := do(request{Op: "serve", Port: port, Size: size, Non20: true}); !rep.OK {
		t.Fatalf("serve: %s", rep.Error)
	}
	want := digest(payload(size))
	for _, c := range []struct{ addr, mode string }{
		{"127.0.0.1", "PASV"}, {"127.0.0.1", "EPSV"}, {"127.0.0.1", "PORT"}, {"127.0.0.1", "EPRT"},
		{"::1", "EPSV"}, {"::1", "EPRT"},
	} {
		rep := do(request{Op: "fetch", Addr: c.addr, Port: port, Mode: c.mode, Path: "/payload.bin", Timeout: 10 * time.Second})
		if !rep.OK || rep.Bytes != size || rep.SHA256 != want || rep.Control == "" {
			t.Errorf("%s %s: %+v", c.addr, c.mode, rep)
		}
	}
	if rep := do(request{Op: "fetch", Addr: "::1", Port: port, Mode: "PORT", Path: "/payload.bin", Timeout: 5 * time.Second}); rep.OK || !strings.Contains(rep.Error, "PORT needs an IPv4") {
		t.Errorf("PORT over IPv6: %+v", rep)
	}
	if rep := do(request{Op: "fetch", Addr: "127.0.0.1", Port: port, Mode: "PASV", Path: "/missing", Timeout: 5 * time.Second}); rep.OK {
		t.Errorf("fetch of a missing file succeeded: %+v", rep)
	}
	if rep := do(request{Op: "bogus"}); rep.OK || !strings.Contains(rep.Error, `unknown op "bogus"`) {
		t.Errorf("bogus op: %+v", rep)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadReply(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("211-Features:\r\n EPSV\r\n211 End\r\n220 hello\r\n"))
	if got, err := readReply(r); err != nil || got != "211 End" {
		t.Fatalf("multi-line reply: %q, %v", got, err)
	}
	if got, err := readReply(r); err != nil || got != "220 hello" {
		t.Fatalf("single-line reply: %q, %v", got, err)
	}
}

// TestServerRefuses: the built-in server's answers to what it does not do.
func TestServerRefuses(t *testing.T) {
	port := freePort(t)
	srv, err := serve(port, []byte("x"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if got, err := readReply(r); err != nil || !strings.HasPrefix(got, "220 ") {
			t.Fatalf("%s: greeting %q, %v", host, got, err)
		}
		exchanges := [][2]string{
			{"RETR /payload.bin", "425 "}, // no data connection announced
			{"RETR /etc/passwd", "550 "},
			{"PORT 1,2,3", "501 "},
			{"EPRT |3|x|1|", "501 "},
			{"EPRT |1|::1|2000|", "501 "},
			{"SITE EXEC sh", "502 "},
		}
		if host == "::1" {
			exchanges = append(exchanges, [2]string{"PASV", "425 "})
		}
		for _, x := range exchanges {
			fmt.Fprintf(c, "%s\r\n", x[0])
			if got, err := readReply(r); err != nil || !strings.HasPrefix(got, x[1]) {
				t.Errorf("%s: %q answered %q, %v; want %s...", host, x[0], got, err, x[1])
			}
		}
	}
}

// TestActiveFromPort20: the server opens active data connections from port
// 20, as FTP servers do, and can do so twice in a row although the first
// connection's port is still in TIME_WAIT. Binding port 20 needs root.
func TestActiveFromPort20(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to bind port 20; CI runs as root")
		}
		t.Skip("needs root to bind port 20")
	}
	port := freePort(t)
	srv, err := serve(port, payload(1000), false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	for i := range 2 {
		rep := fetch(request{Addr: "127.0.0.1", Port: port, Mode: "PORT", Path: "/payload.bin", Timeout: 10 * time.Second})
		if !rep.OK || rep.Bytes != 1000 {
			t.Fatalf("active transfer %d: %+v", i+1, rep)
		}
	}
}
