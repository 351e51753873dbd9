package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ftpnft/ftpnft/internal/nlio"
	"golang.org/x/sys/unix"
)

// Expectations are decoded here rather than by github.com/ti-mo/conntrack:
// its generic attribute decoder made 42 allocations per expectation, and a
// listing of 4,000 spent more time decoding than the kernel spent dumping
// (docs/BENCHMARKS.md). This decoder fills an Expectation directly.

// Attributes of an expectation message (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaExpectMaster   = 1
	ctaExpectTuple    = 2
	ctaExpectMask     = 3
	ctaExpectTimeout  = 4
	ctaExpectID       = 5
	ctaExpectHelpName = 6
	ctaExpectZone     = 7
	ctaExpectFlags    = 8
	ctaExpectClass    = 9
	ctaExpectNAT      = 10

	ctaExpectNATDir   = 1
	ctaExpectNATTuple = 2

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
)

// Message types of the expectation subsystem (IPCTNL_MSG_EXP_*).
const (
	ipctnlMsgExpNew    = 0
	ipctnlMsgExpGet    = 1
	ipctnlMsgExpDelete = 2
)

var errMalformed = errors.New("malformed expectation message")

// decodeExpectation decodes the payload of an expectation message (after
// the netlink header: the nfgenmsg header, then attributes). Attributes it
// does not know are skipped; known ones of the wrong size are an error.
func decodeExpectation(data []byte) (Expectation, error) {
	x := Expectation{Flags: []string{}}
	if len(data) < 4 {
		return x, fmt.Errorf("%w: %d bytes", errMalformed, len(data))
	}
	var proto uint8
	var nat *NAT
	ok := eachAttr(data[4:], func(typ uint16, v []byte) bool {
		switch typ {
		case ctaExpectMaster:
			var ok bool
			x.Master, _, ok = decodeTuple(v)
			return ok
		case ctaExpectTuple:
			var ok bool
			x.Expected, proto, ok = decodeTuple(v)
			return ok
		case ctaExpectMask:
			var ok bool
			x.Mask, _, ok = decodeTuple(v)
			return ok
		case ctaExpectTimeout:
			return be32(v, &x.Timeout)
		case ctaExpectID:
			return be32(v, &x.ID)
		case ctaExpectHelpName:
			x.Helper = helperName(v)
		case ctaExpectZone:
			if len(v) != 2 {
				return false
			}
			x.Zone = binary.BigEndian.Uint16(v)
		case ctaExpectFlags:
			var flags uint32
			if !be32(v, &flags) {
				return false
			}
			for _, f := range expectFlags {
				if flags&f.bit != 0 {
					x.Flags = append(x.Flags, f.name)
				}
			}
		case ctaExpectClass:
			return be32(v, &x.Class)
		case ctaExpectNAT:
			nat = &NAT{Dir: "original"}
			return eachAttr(v, func(typ uint16, v []byte) bool {
				switch typ {
				case ctaExpectNATDir:
					var dir uint32
					if !be32(v, &dir) {
						return false
					}
					if dir == 1 {
						nat.Dir = "reply"
					}
				case ctaExpectNATTuple:
					var ok bool
					nat.Tuple, _, ok = decodeTuple(v)
					return ok
				}
				return true
			})
		}
		return true
	})
	if !ok {
		return x, errMalformed
	}
	x.Proto = protoName(proto)
	if nat != nil && (nat.Tuple.Src.IsValid() || nat.Tuple.Dst.IsValid()) {
		x.NAT = nat
	}
	return x, nil
}

// decodeTuple decodes a CTA_TUPLE_* nest: addresses, ports and the layer 4
// protocol.
func decodeTuple(b []byte) (t Tuple, proto uint8, ok bool) {
	ok = eachAttr(b, func(typ uint16, v []byte) bool {
		switch typ {
		case ctaTupleIP:
			return eachAttr(v, func(typ uint16, v []byte) bool {
				var a netip.Addr
				switch {
				case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(v) == 4:
					a = netip.AddrFrom4([4]byte(v))
				case (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(v) == 16:
					a = netip.AddrFrom16([16]byte(v))
				default:
					return false
				}
				if typ == ctaIPv4Src || typ == ctaIPv6Src {
					t.Src = a
				} else {
					t.Dst = a
				}
				return true
			})
		case ctaTupleProto:
			return eachAttr(v, func(typ uint16, v []byte) bool {
				switch typ {
				case ctaProtoNum:
					if len(v) != 1 {
						return false
					}
					proto = v[0]
				case ctaProtoSrcPort, ctaProtoDstPort:
					if len(v) != 2 {
						return false
					}
					if typ == ctaProtoSrcPort {
						t.SPort = binary.BigEndian.Uint16(v)
					} else {
						t.DPort = binary.BigEndian.Uint16(v)
					}
				}
				return true
			})
		}
		return true
	})
	return t, proto, ok
}

// eachAttr calls f with the type (without flags) and payload of each
// netlink attribute in b, until f returns false. It returns false when f
// did, or when b does not hold whole attributes.
func eachAttr(b []byte, f func(typ uint16, v []byte) bool) bool {
	for len(b) > 0 {
		if len(b) < unix.NLA_HDRLEN {
			return false
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.NLA_HDRLEN || l > len(b) {
			return false
		}
		if !f(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.NLA_HDRLEN:l]) {
			return false
		}
		b = b[min(nlio.Align(l), len(b)):]
	}
	return true
}

func be32(v []byte, out *uint32) bool {
	if len(v) != 4 {
		return false
	}
	*out = binary.BigEndian.Uint32(v)
	return true
}

// helperName returns a helper's name without the kernel's terminating NUL,
// and without allocating for the name ftpnft watches.
func helperName(v []byte) string {
	v = bytes.TrimSuffix(v, []byte{0})
	if string(v) == "ftp" {
		return "ftp"
	}
	return string(v)
}
