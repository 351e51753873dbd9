package nlio

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ReadSize is the size of one read from a netlink socket.
const ReadSize = 64 << 10

// DumpTimeout bounds the wait for the next part of a dump, which normally
// comes within milliseconds. A long dump (a million set elements take the
// kernel half a minute and more) may take longer in all, as long as it goes
// on.
const DumpTimeout = 30 * time.Second

// Receive reads the answers queued on nc and hands each message to each,
// until each returns true. With wait, it waits for more answers, up to
// DumpTimeout for each part, or until ctx ends (then it returns ctx's
// error); without, it
// returns nil once nothing more is queued. A message's Data is valid only
// until each returns: each must copy what it keeps.
func Receive(ctx context.Context, nc *netlink.Conn, wait bool, each func(netlink.Message) (done bool)) (err error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	if wait {
		// Ending ctx ends the wait: a read deadline in the past wakes the
		// read, and the error it gets is ctx's.
		stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Now()) })
		defer stop()
		// A socket may serve later reads: the deadline ends with this one.
		defer nc.SetReadDeadline(time.Time{})
		defer func() {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}()
	}
	buf := make([]byte, ReadSize)
	for {
		if wait {
			// Each part gets DumpTimeout, unless ctx has ended (its
			// callback may have set the deadline to now already).
			if err := nc.SetReadDeadline(time.Now().Add(DumpTimeout)); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return !wait || rerr != unix.EAGAIN
		}); err != nil {
			return err
		}
		if rerr == unix.EAGAIN && !wait {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			m, rest, ok := next(b)
			if !ok {
				break
			}
			if each(m) {
				return nil
			}
			b = rest
		}
	}
}

// next cuts the first message off b; ok is false when b does not hold a
// whole one.
func next(b []byte) (m netlink.Message, rest []byte, ok bool) {
	l := int(binary.NativeEndian.Uint32(b))
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return m, nil, false
	}
	m = netlink.Message{
		Header: netlink.Header{
			Length:   uint32(l),
			Type:     netlink.HeaderType(binary.NativeEndian.Uint16(b[4:])),
			Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:])),
			Sequence: binary.NativeEndian.Uint32(b[8:]),
			PID:      binary.NativeEndian.Uint32(b[12:]),
		},
		Data: b[unix.NLMSG_HDRLEN:l],
	}
	return m, b[min(Align(l), len(b)):], true
}

// Errno returns the error code that ends an answer: that of an NLMSG_ERROR
// (0: an acknowledgement) or of an NLMSG_DONE (0: the dump is complete;
// otherwise it failed part way). ok is false for other messages, and for
// one too short to hold the code.
func Errno(m netlink.Message) (code syscall.Errno, ok bool) {
	if (m.Header.Type != netlink.Error && m.Header.Type != netlink.Done) || len(m.Data) < 4 {
		return 0, false
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data))), true
}

// Align rounds n up to netlink's 4-byte alignment.
func Align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// EachAttr calls f with the type (without the nested and byte-order flags)
// and the payload of each netlink attribute in b, in order, and returns f's
// first error. b must hold whole attributes: a length that overruns b, or
// bytes too few for a header after the last attribute, is an error.
func EachAttr(b []byte, f func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.NLA_HDRLEN {
			return fmt.Errorf("%d bytes after the last netlink attribute", len(b))
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.NLA_HDRLEN || l > len(b) {
			return fmt.Errorf("netlink attribute of length %d in %d bytes", l, len(b))
		}
		if err := f(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.NLA_HDRLEN:l]); err != nil {
			return err
		}
		b = b[min(Align(l), len(b)):]
	}
	return nil
}

// Attr returns the first attribute typ of a netfilter message (whose data
// begins with the 4-byte nfgenmsg), or nil. After a malformed attribute,
// what came before it still counts.
func Attr(m netlink.Message, typ uint16) []byte {
	if len(m.Data) < 4 {
		return nil
	}
	var out []byte
	_ = EachAttr(m.Data[4:], func(t uint16, data []byte) error {
		if t == typ && out == nil {
			out = data
		}
		return nil
	})
	return out
}

// StringAttr returns the string attribute typ of a netfilter message,
// without its terminating NULs.
func StringAttr(m netlink.Message, typ uint16) string {
	return strings.TrimRight(string(Attr(m, typ)), "\x00")
}

// AppendAttr appends a netlink attribute, padded to 4 bytes.
func AppendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NLA_HDRLEN+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// BeginNest appends the header of a nested attribute whose length EndNest
// fills in, and returns where it starts.
func BeginNest(b *[]byte, typ uint16) int {
	start := len(*b)
	*b = binary.NativeEndian.AppendUint16(*b, 0)
	*b = binary.NativeEndian.AppendUint16(*b, typ|unix.NLA_F_NESTED)
	return start
}

// EndNest sets the length of the nested attribute that BeginNest started
// at start to end at the end of b.
func EndNest(b []byte, start int) {
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
}

// Listen hands each message that nc receives (announcements of the groups
// it joined) to each, until ctx ends (then it returns nil) or a read
// fails. When the socket's buffer overflowed and announcements were lost
// (ENOBUFS), it calls lost and goes on listening. It waits without a
// deadline and without using the CPU. A message's Data is valid only until
// each returns.
func Listen(ctx context.Context, nc *netlink.Conn, each func(netlink.Message), lost func()) error {
	rc, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	// Ending ctx ends the wait: a read deadline in the past wakes the read.
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, ReadSize)
	for {
		if ctx.Err() != nil {
			return nil
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN
		}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case rerr == unix.ENOBUFS:
			lost()
			continue
		case rerr != nil:
			return rerr
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			m, rest, ok := next(b)
			if !ok {
				break
			}
			each(m)
			b = rest
		}
	}
}
