package selftest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
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
	replies := bufio.NewScanner(outR)
	do := func(req request) reply {
		t.Helper()
		b, _ := json.Marshal(req)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("no reply to %+v", req)
		}
		var rep reply
		if err := json.Unmarshal(replies.Bytes(), &rep); err != nil {
			t.Fatal(err)
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
