package nft

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/ftpnft/ftpnft/internal/nlio"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Interval set elements are encoded and read back here rather than with
// google/nftables: a 10,000-source allowlist is 20,000 elements, and its
// generic encoder and decoder (a slice of attributes and several
// allocations per element) cost more than the kernel's own work on them.

// elementsMessage is an NFT_MSG_NEWSETELEM that adds els to set in table,
// encoded as nft encodes it.
func elementsMessage(table, set string, els []element) netlink.Message {
	// nfgenmsg, table, set, the list's header
	size := 4 + unix.NLA_HDRLEN + nlio.Align(len(table)+1) + unix.NLA_HDRLEN + nlio.Align(len(set)+1) + unix.NLA_HDRLEN
	for _, e := range els {
		size += 3*unix.NLA_HDRLEN + e.Key.BitLen()/8 // element, key, value
		if e.IntervalEnd {
			size += unix.NLA_HDRLEN + 4 // flags
		}
	}
	b := make([]byte, 0, size)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(table))
	b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_SET, cstring(set))
	list := beginNest(&b, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], unix.NFT_SET_ELEM_INTERVAL_END)
	for _, e := range els {
		item := beginNest(&b, unix.NFTA_LIST_ELEM)
		if e.IntervalEnd {
			b = appendAttr(b, unix.NFTA_SET_ELEM_FLAGS, end[:])
		}
		key := beginNest(&b, unix.NFTA_SET_ELEM_KEY)
		k := e.Key.As16()
		b = appendAttr(b, unix.NFTA_DATA_VALUE, k[16-e.Key.BitLen()/8:])
		endNest(b, key)
		endNest(b, item)
	}
	endNest(b, list)
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: b,
	}
}

func cstring(s string) []byte { return append([]byte(s), 0) }

// appendAttr appends a netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NLA_HDRLEN+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// beginNest appends the header of a nested attribute whose length endNest
// fills in, and returns where it starts.
func beginNest(b *[]byte, typ uint16) int {
	start := len(*b)
	*b = binary.NativeEndian.AppendUint16(*b, 0)
	*b = binary.NativeEndian.AppendUint16(*b, typ|unix.NLA_F_NESTED)
	return start
}

func endNest(b []byte, start int) {
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
}

// elementsOf decodes the elements of NFT_MSG_NEWSETELEM messages, as the
// kernel sends them in answer to a dump.
func elementsOf(msgs []netlink.Message) ([]element, error) {
	var els []element
	for _, m := range msgs {
		if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWSETELEM || len(m.Data) < 4 {
			continue
		}
		err := nlio.EachAttr(m.Data[4:], func(typ uint16, list []byte) error {
			if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				return nil
			}
			return nlio.EachAttr(list, func(_ uint16, item []byte) error {
				var e element
				err := nlio.EachAttr(item, func(typ uint16, data []byte) error {
					switch typ {
					case unix.NFTA_SET_ELEM_FLAGS:
						if len(data) == 4 {
							e.IntervalEnd = binary.BigEndian.Uint32(data)&unix.NFT_SET_ELEM_INTERVAL_END != 0
						}
					case unix.NFTA_SET_ELEM_KEY:
						return nlio.EachAttr(data, func(typ uint16, value []byte) error {
							if typ == unix.NFTA_DATA_VALUE {
								e.Key, _ = netip.AddrFromSlice(value)
							}
							return nil
						})
					}
					return nil
				})
				if err == nil && !e.Key.IsValid() {
					err = errors.New("set element without an address key")
				}
				els = append(els, e)
				return err
			})
		})
		if err != nil {
			return nil, err
		}
	}
	return els, nil
}

// setElements reads the elements of set in table with one dump.
func (c *conn) setElements(table, set string) ([]element, error) {
	data := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	data = appendAttr(data, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(table))
	data = appendAttr(data, unix.NFTA_SET_ELEM_LIST_SET, cstring(set))
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: data,
	}
	msgs, err := c.dump(req)
	if err != nil {
		return nil, err
	}
	return elementsOf(msgs)
}
