package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ftpnft/ftpnft/internal/nlio"
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

// Attributes of a connection message (CTA_*), and the status bit of a
// connection that an expectation admitted (IPS_EXPECTED).
const (
	ctaStatus   = 3
	ctaHelp     = 5
	ipsExpected = 1
)

// Message types of the expectation subsystem (IPCTNL_MSG_EXP_*).
const (
	ipctnlMsgExpNew    = 0
	ipctnlMsgExpGet    = 1
	ipctnlMsgExpDelete = 2
)

var errMalformed = errors.New("malformed expectation message")

// mayRelate reports whether the payload of a new-connection message may
// matter to a watch: the connection has a helper (CTA_HELP) or was expected
// (IPS_EXPECTED in CTA_STATUS). A watch sees every new connection in the
// namespace; the others are skipped without ti-mo's generic decoding (7
// allocations each). When in doubt (a malformed message) it says true and
// leaves the verdict to that decoding.
func mayRelate(data []byte) bool {
	if len(data) < 4 {
		return true
	}
	may := false
	err := nlio.EachAttr(data[4:], func(typ uint16, v []byte) error {
		// ti-mo converts attribute types to uint8: it takes 0x3003 for
		// CTA_STATUS too, and so must this, never to skip what it would
		// decode. (The kernel sends no such types; FuzzDecodeEvent found it.)
		switch uint8(typ) {
		case ctaHelp:
			may = true
		case ctaStatus:
			may = may || len(v) != 4 || binary.BigEndian.Uint32(v)&ipsExpected != 0
		}
		return nil
	})
	return may || err != nil
}

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
	err := nlio.EachAttr(data[4:], func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case ctaExpectMaster:
			x.Master, _, err = decodeTuple(v)
		case ctaExpectTuple:
			x.Expected, proto, err = decodeTuple(v)
		case ctaExpectMask:
			x.Mask, _, err = decodeTuple(v)
		case ctaExpectTimeout:
			x.Timeout, err = be32(v)
		case ctaExpectID:
			x.ID, err = be32(v)
		case ctaExpectHelpName:
			x.Helper = helperName(v)
		case ctaExpectZone:
			x.Zone, err = be16(v)
		case ctaExpectFlags:
			var flags uint32
			if flags, err = be32(v); err != nil {
				return err
			}
			for _, f := range expectFlags {
				if flags&f.bit != 0 {
					x.Flags = append(x.Flags, f.name)
				}
			}
		case ctaExpectClass:
			x.Class, err = be32(v)
		case ctaExpectNAT:
			nat = &NAT{Dir: "original"}
			err = nlio.EachAttr(v, func(typ uint16, v []byte) error {
				var err error
				switch typ {
				case ctaExpectNATDir:
					var dir uint32
					if dir, err = be32(v); dir == 1 {
						nat.Dir = "reply"
					}
				case ctaExpectNATTuple:
					nat.Tuple, _, err = decodeTuple(v)
				}
				return err
			})
		}
		return err
	})
	if err != nil {
		if !errors.Is(err, errMalformed) {
			err = fmt.Errorf("%w: %v", errMalformed, err)
		}
		return x, err
	}
	x.Proto = protoName(proto)
	if nat != nil && (nat.Tuple.Src.IsValid() || nat.Tuple.Dst.IsValid()) {
		x.NAT = nat
	}
	return x, nil
}

// decodeTuple decodes a CTA_TUPLE_* nest: addresses, ports and the layer 4
// protocol.
func decodeTuple(b []byte) (t Tuple, proto uint8, err error) {
	err = nlio.EachAttr(b, func(typ uint16, v []byte) error {
		switch typ {
		case ctaTupleIP:
			return nlio.EachAttr(v, func(typ uint16, v []byte) error {
				var a netip.Addr
				switch {
				case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(v) == 4:
					a = netip.AddrFrom4([4]byte(v))
				case (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(v) == 16:
					a = netip.AddrFrom16([16]byte(v))
				default:
					return errMalformed
				}
				if typ == ctaIPv4Src || typ == ctaIPv6Src {
					t.Src = a
				} else {
					t.Dst = a
				}
				return nil
			})
		case ctaTupleProto:
			return nlio.EachAttr(v, func(typ uint16, v []byte) (err error) {
				switch typ {
				case ctaProtoNum:
					if len(v) != 1 {
						return errMalformed
					}
					proto = v[0]
				case ctaProtoSrcPort:
					t.SPort, err = be16(v)
				case ctaProtoDstPort:
					t.DPort, err = be16(v)
				}
				return err
			})
		}
		return nil
	})
	return t, proto, err
}

// be16 decodes a big-endian 16-bit attribute.
func be16(v []byte) (uint16, error) {
	if len(v) != 2 {
		return 0, errMalformed
	}
	return binary.BigEndian.Uint16(v), nil
}

// be32 decodes a big-endian 32-bit attribute.
func be32(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, errMalformed
	}
	return binary.BigEndian.Uint32(v), nil
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
