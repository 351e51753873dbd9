package nlio

import (
	"encoding/binary"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ReadSize is the size of one read from a netlink socket.
const ReadSize = 64 << 10

// DumpTimeout bounds the wait for the end of a dump, which normally takes
// milliseconds.
const DumpTimeout = 30 * time.Second

// Receive reads the answers queued on nc and hands each message to each,
// until each returns true. With wait, it waits for more answers, up to
// DumpTimeout; without, it returns nil once nothing more is queued. A
// message's Data is valid only until each returns: each must copy what it
// keeps.
func Receive(nc *netlink.Conn, wait bool, each func(netlink.Message) (done bool)) error {
	rc, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	if wait {
		if err := nc.SetReadDeadline(time.Now().Add(DumpTimeout)); err != nil {
			return err
		}
	}
	buf := make([]byte, ReadSize)
	for {
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

// Align rounds n up to netlink's 4-byte alignment.
func Align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
