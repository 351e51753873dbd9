package selftest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpnft/ftpnft/helper"
)

// PeerCommand is the hidden first argument with which the binary runs as a
// selftest peer: main must call [Peer] when it sees it.
const PeerCommand = "selftest-peer"

// request is what the parent asks a peer to do, one JSON object per line.
type request struct {
	Op      string        `json:"op"` // "serve" or "fetch"
	Port    int           `json:"port,omitempty"`
	Size    int           `json:"size,omitempty"`
	Addr    string        `json:"addr,omitempty"`
	Mode    string        `json:"mode,omitempty"` // PASV, EPSV, PORT, EPRT
	Path    string        `json:"path,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Non20 lets the server open active data connections from any port
	// instead of port 20, which needs root.
	Non20 bool `json:"non20,omitempty"`
}

// reply is a peer's answer.
type reply struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Bytes  int    `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Control is the control connection's local address (client side).
	Control string `json:"control,omitempty"`
}

// payload is the file the server serves: deterministic, so the parent knows
// its digest without asking.
func payload(size int) []byte {
	b := make([]byte, size)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Peer serves requests read from in until in closes, writing replies to out.
// It runs in the peer process, inside its own network namespace.
func Peer(in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	s := bufio.NewScanner(in)
	var running *server
	defer func() {
		if running != nil {
			running.stop()
		}
	}()
	for s.Scan() {
		var req request
		if err := json.Unmarshal(s.Bytes(), &req); err != nil {
			return err
		}
		var rep reply
		switch req.Op {
		case "serve":
			if running != nil {
				running.stop()
			}
			var err error
			running, err = serve(req.Port, payload(req.Size), req.Non20)
			rep = result(err)
		case "fetch":
			rep = fetch(req)
		default:
			rep = reply{Error: fmt.Sprintf("unknown op %q", req.Op)}
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return s.Err()
}

func result(err error) reply {
	if err != nil {
		return reply{Error: err.Error()}
	}
	return reply{OK: true}
}

// server is the built-in FTP server: anonymous and read-only, it serves one
// file, /payload.bin, in binary, over passive (PASV, EPSV) and active (PORT,
// EPRT) data connections. That is what the ftp conntrack helper reads, and
// all that selftest needs; an FTP server library cost every ftpnft command
// 0.5 ms of start-up (docs/BENCHMARKS.md).
type server struct {
	ln    net.Listener
	data  []byte
	non20 bool // active data connections from any port, not port 20

	mu    sync.Mutex
	conns map[io.Closer]bool // connections and passive listeners, closed by stop
}

// serve starts the server on port of every address.
func serve(port int, data []byte, non20 bool) (*server, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, data: data, non20: non20, conns: map[io.Closer]bool{}}
	go s.accept()
	return s, nil
}

func (s *server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // stopped
		}
		if s.track(c) {
			go s.session(c)
		}
	}
}

// track registers c to be closed by stop, or closes it if stop came first.
func (s *server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		c.Close()
		return false
	}
	s.conns[c] = true
	return true
}

// untrack closes c.
func (s *server) untrack(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	c.Close()
}

// stop closes the listener, every connection and every passive listener.
func (s *server) stop() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// serverIdle is how long a control connection may stay silent.
const serverIdle = 30 * time.Second

// session serves one control connection.
func (s *server) session(c net.Conn) {
	defer s.untrack(c)
	localIP := ipOf(c.LocalAddr())
	say := func(format string, a ...any) bool {
		c.SetWriteDeadline(time.Now().Add(serverIdle))
		_, err := fmt.Fprintf(c, format+"\r\n", a...)
		return err == nil
	}
	var passive net.Listener // after PASV or EPSV
	var active string        // after PORT or EPRT: the client's data address
	endPassive := func() {
		if passive != nil {
			s.untrack(passive)
			passive = nil
		}
	}
	defer endPassive()
	r := bufio.NewReader(c)
	if !say("220 ftpnft selftest server") {
		return
	}
	for {
		c.SetReadDeadline(time.Now().Add(serverIdle))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		ok := true
		switch verb = strings.ToUpper(verb); verb {
		case "USER":
			ok = say("331 Any password will do")
		case "PASS":
			ok = say("230 Logged in")
		case "TYPE":
			ok = say("200 Binary it is")
		case "PASV", "EPSV":
			endPassive()
			active = ""
			if verb == "PASV" && !localIP.Is4() {
				ok = say("425 PASV needs IPv4; use EPSV")
				break
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(localIP.String(), "0"))
			if err != nil {
				ok = say("425 %v", err)
				break
			}
			if !s.track(ln) {
				return // stopped
			}
			passive = ln
			port := passive.Addr().(*net.TCPAddr).Port
			if verb == "PASV" {
				ok = say("227 Entering Passive Mode (%s)", hostPort(localIP, port))
			} else {
				ok = say("229 Entering Extended Passive Mode (|||%d|)", port)
			}
		case "PORT", "EPRT":
			ap, err := helper.ParseActive(verb, arg)
			if err != nil {
				ok = say("501 %v", err)
				break
			}
			endPassive()
			active = ap.String()
			ok = say("200 %s accepted", verb)
		case "RETR":
			if strings.TrimPrefix(arg, "/") != "payload.bin" {
				ok = say("550 %s: no such file", arg)
				break
			}
			dc, err := s.dataConn(passive, active, localIP)
			endPassive()
			active = ""
			if err != nil {
				ok = say("425 No data connection: %v", err)
				break
			}
			if !say("150 Sending %d bytes", len(s.data)) {
				s.untrack(dc)
				return
			}
			_, err = dc.Write(s.data)
			s.untrack(dc)
			if err != nil {
				ok = say("426 Transfer aborted: %v", err)
			} else {
				ok = say("226 Transfer complete")
			}
		case "QUIT":
			say("221 Bye")
			return
		default:
			ok = say("502 %s not implemented", verb)
		}
		if !ok {
			return
		}
	}
}

// dataConn opens the data connection of a transfer: it accepts the
// client's on the passive listener, or connects to the client's active
// address from port 20 (from any port with non20).
func (s *server) dataConn(passive net.Listener, active string, localIP netip.Addr) (net.Conn, error) {
	var c net.Conn
	var err error
	switch {
	case passive != nil:
		passive.(*net.TCPListener).SetDeadline(time.Now().Add(dataTimeout))
		c, err = passive.Accept()
	case active != "":
		d := net.Dialer{Timeout: dataTimeout}
		if !s.non20 {
			// Port 20 again while the last transfer's connection from it
			// is in TIME_WAIT: SO_REUSEADDR, as FTP servers do.
			d.LocalAddr = &net.TCPAddr{IP: localIP.AsSlice(), Port: 20}
			d.Control = reuseAddr
		}
		c, err = d.Dial("tcp", active)
	default:
		return nil, errors.New("no PASV, EPSV, PORT or EPRT before RETR")
	}
	if err != nil {
		return nil, err
	}
	if !s.track(c) {
		return nil, errors.New("server stopped")
	}
	c.SetDeadline(time.Now().Add(dataTimeout))
	return c, nil
}

func reuseAddr(_, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// dataTimeout bounds waiting for, and transferring over, a data connection.
const dataTimeout = 20 * time.Second

// ipOf returns the IP address of a TCP endpoint, IPv4-mapped ones as IPv4.
func ipOf(a net.Addr) netip.Addr {
	return a.(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// hostPort formats an IPv4 address and a port as PORT and a 227 reply to
// PASV write them: "h1,h2,h3,h4,p1,p2". helper.ParseActive reads it.
func hostPort(a netip.Addr, port int) string {
	b := a.As4()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", b[0], b[1], b[2], b[3], port>>8, port&0xff)
}

// fetch downloads req.Path from the server at req.Addr in req.Mode.
func fetch(req request) reply {
	ctx, cancel := context.WithTimeout(context.Background(), req.Timeout)
	defer cancel()
	addr := net.JoinHostPort(req.Addr, strconv.Itoa(req.Port))
	var data []byte
	var control string
	var err error
	switch req.Mode {
	case "PASV", "EPSV", "PORT", "EPRT":
		data, control, err = fetchWith(ctx, addr, req.Path, req.Mode)
	default:
		err = fmt.Errorf("unknown mode %q", req.Mode)
	}
	if err != nil {
		return reply{Error: err.Error(), Control: control}
	}
	return reply{OK: true, Bytes: len(data), SHA256: digest(data), Control: control}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// fetchWith is the built-in FTP client: it logs in anonymously and
// retrieves path over a data connection opened in mode: passive (PASV,
// EPSV: it connects to the port the server names) or active (PORT, EPRT: it
// listens, names the port, and accepts the server's connection). It returns
// the bytes and the control connection's local address.
func fetchWith(ctx context.Context, addr, path, mode string) ([]byte, string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	conn.SetDeadline(deadline(ctx))
	control := conn.LocalAddr().String()
	r := bufio.NewReader(conn)
	cmd := func(line string, want ...string) (string, error) {
		if line != "" {
			if _, err := fmt.Fprintf(conn, "%s\r\n", line); err != nil {
				return "", err
			}
		}
		got, err := readReply(r)
		if err != nil {
			return got, err
		}
		for _, w := range want {
			if strings.HasPrefix(got, w) {
				return got, nil
			}
		}
		return got, fmt.Errorf("%q: server replied %q", line, got)
	}
	if _, err := cmd("", "220"); err != nil {
		return nil, control, err
	}
	if _, err := cmd("USER anonymous", "331", "230"); err != nil {
		return nil, control, err
	}
	if _, err := cmd("PASS selftest@", "230", "202"); err != nil {
		return nil, control, err
	}
	if _, err := cmd("TYPE I", "200"); err != nil {
		return nil, control, err
	}
	local, remote := ipOf(conn.LocalAddr()), ipOf(conn.RemoteAddr())

	var dc net.Conn
	switch mode {
	case "PASV", "EPSV":
		rep, err := cmd(mode, "227", "229")
		if err != nil {
			return nil, control, err
		}
		to, err := helper.ParsePassive(rep, remote)
		if err != nil {
			return nil, control, err
		}
		if dc, err = d.DialContext(ctx, "tcp", to.String()); err != nil {
			return nil, control, fmt.Errorf("data connection to %s: %w", to, err)
		}
		defer dc.Close()
		if _, err := cmd("RETR "+path, "150", "125"); err != nil {
			return nil, control, err
		}
	default: // PORT, EPRT
		if mode == "PORT" && !local.Is4() {
			return nil, control, errors.New("PORT needs an IPv4 control connection")
		}
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: local.AsSlice()})
		if err != nil {
			return nil, control, err
		}
		defer ln.Close()
		ln.SetDeadline(deadline(ctx))
		port := ln.Addr().(*net.TCPAddr).Port
		var announce string
		switch {
		case mode == "PORT":
			announce = "PORT " + hostPort(local, port)
		case local.Is4():
			announce = fmt.Sprintf("EPRT |1|%s|%d|", local, port)
		default:
			announce = fmt.Sprintf("EPRT |2|%s|%d|", local, port)
		}
		if _, err := cmd(announce, "200"); err != nil {
			return nil, control, err
		}
		if _, err := cmd("RETR "+path, "150", "125"); err != nil {
			return nil, control, err
		}
		if dc, err = ln.Accept(); err != nil {
			return nil, control, fmt.Errorf("waiting for the server's data connection: %w", err)
		}
		defer dc.Close()
	}
	dc.SetDeadline(deadline(ctx))
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, dc); err != nil {
		return nil, control, err
	}
	dc.Close()
	if _, err := cmd("", "226", "250"); err != nil {
		return nil, control, err
	}
	cmd("QUIT", "221")
	return buf.Bytes(), control, nil
}

// readReply reads one FTP reply, multi-line replies included, and returns
// its last line.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return line, err
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) >= 4 && line[3] == '-' {
		code := line[:3]
		for {
			next, err := r.ReadString('\n')
			if err != nil {
				return next, err
			}
			next = strings.TrimRight(next, "\r\n")
			if strings.HasPrefix(next, code+" ") {
				return next, nil
			}
		}
	}
	return line, nil
}
