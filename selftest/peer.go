package selftest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/jlaffaye/ftp"
	"github.com/spf13/afero"
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
	var server *ftpserver.FtpServer
	defer func() {
		if server != nil {
			server.Stop()
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
			srv, err := serve(req.Port, payload(req.Size), req.Non20)
			rep = result(err)
			server = srv
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

// serve starts an anonymous, read-only FTP server on port serving
// /payload.bin.
func serve(port int, data []byte, non20 bool) (*ftpserver.FtpServer, error) {
	fs := afero.NewMemMapFs()
	if err := afero.WriteFile(fs, "/payload.bin", data, 0o644); err != nil {
		return nil, err
	}
	d := &driver{fs: afero.NewReadOnlyFs(fs), settings: &ftpserver.Settings{
		ListenAddr:              fmt.Sprintf("[::]:%d", port),
		ConnectionTimeout:       5,
		ActiveTransferPortNon20: non20,
		IdleTimeout:             30,
		Banner:                  "ftpnft selftest",
	}}
	srv := ftpserver.NewFtpServer(d)
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	go srv.Serve()
	return srv, nil
}

// driver is ftpserverlib's main driver: anyone may log in, read-only.
type driver struct {
	fs       afero.Fs
	settings *ftpserver.Settings
}

func (d *driver) GetSettings() (*ftpserver.Settings, error) { return d.settings, nil }
func (d *driver) ClientConnected(ftpserver.ClientContext) (string, error) {
	return "ftpnft selftest server", nil
}
func (d *driver) ClientDisconnected(ftpserver.ClientContext) {}
func (d *driver) AuthUser(_ ftpserver.ClientContext, _, _ string) (ftpserver.ClientDriver, error) {
	return d.fs, nil
}
func (d *driver) GetTLSConfig() (*tls.Config, error) { return nil, errors.New("no TLS") }

// fetch downloads req.Path from the server at req.Addr in req.Mode.
func fetch(req request) reply {
	ctx, cancel := context.WithTimeout(context.Background(), req.Timeout)
	defer cancel()
	addr := net.JoinHostPort(req.Addr, strconv.Itoa(req.Port))
	var data []byte
	var control string
	var err error
	switch req.Mode {
	case "PASV", "EPSV":
		data, control, err = fetchPassive(ctx, addr, req.Path, req.Mode == "PASV")
	case "PORT", "EPRT":
		data, control, err = fetchActive(ctx, addr, req.Path, req.Mode)
	default:
		err = fmt.Errorf("unknown mode %q", req.Mode)
	}
	if err != nil {
		return reply{Error: err.Error(), Control: control}
	}
	return reply{OK: true, Bytes: len(data), SHA256: digest(data), Control: control}
}

// fetchPassive uses jlaffaye/ftp, forcing PASV or EPSV.
func fetchPassive(ctx context.Context, addr, path string, pasv bool) ([]byte, string, error) {
	var control string
	dial := func(network, address string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err == nil && control == "" {
			control = c.LocalAddr().String()
		}
		return c, err
	}
	c, err := ftp.Dial(addr, ftp.DialWithContext(ctx), ftp.DialWithDialFunc(dial), ftp.DialWithDisabledEPSV(pasv), ftp.DialWithTimeout(time.Until(deadline(ctx))))
	if err != nil {
		return nil, control, err
	}
	defer c.Quit()
	if err := c.Login("anonymous", "selftest@"); err != nil {
		return nil, control, err
	}
	r, err := c.Retr(path)
	if err != nil {
		return nil, control, fmt.Errorf("RETR %s: %w", path, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, control, err
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// fetchActive is an active-mode client (jlaffaye/ftp has none): it listens,
// announces the listener with PORT or EPRT, and accepts the server's data
// connection.
func fetchActive(ctx context.Context, addr, path, mode string) ([]byte, string, error) {
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
	local := conn.LocalAddr().(*net.TCPAddr)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: local.IP})
	if err != nil {
		return nil, control, err
	}
	defer ln.Close()
	ln.SetDeadline(deadline(ctx))
	lp := ln.Addr().(*net.TCPAddr)
	var announce string
	ip, _ := netip.AddrFromSlice(local.IP)
	if mode == "PORT" {
		if !ip.Unmap().Is4() {
			return nil, control, errors.New("PORT needs an IPv4 control connection")
		}
		a := ip.Unmap().As4()
		announce = fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], lp.Port>>8, lp.Port&0xff)
	} else {
		af := 1
		if ip.Unmap().Is6() {
			af = 2
		}
		announce = fmt.Sprintf("EPRT |%d|%s|%d|", af, ip.Unmap(), lp.Port)
	}
	if _, err := cmd(announce, "200"); err != nil {
		return nil, control, err
	}
	if _, err := cmd("RETR "+path, "150", "125"); err != nil {
		return nil, control, err
	}
	dc, err := ln.Accept()
	if err != nil {
		return nil, control, fmt.Errorf("waiting for the server's data connection: %w", err)
	}
	dc.SetDeadline(deadline(ctx))
	var buf bytes.Buffer
	_, err = io.Copy(&buf, dc)
	dc.Close()
	if err != nil {
		return nil, control, err
	}
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
