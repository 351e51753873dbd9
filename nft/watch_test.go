package nft

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// announcement is an nf_tables announcement of type typ for table in
// family fam.
func announcement(typ uint16, fam byte, table string) netlink.Message {
	data := nlio.AppendAttr([]byte{fam, 0, 0, 0}, 1, cstring(table))
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)}, Data: data}
}

func newGen(gen, pid uint32, name string) netlink.Message {
	data := []byte{unix.AF_UNSPEC, 0, 0, 0}
	data = nlio.AppendAttr(data, unix.NFTA_GEN_ID, binary.BigEndian.AppendUint32(nil, gen))
	data = nlio.AppendAttr(data, unix.NFTA_GEN_PROC_PID, binary.BigEndian.AppendUint32(nil, pid))
	data = nlio.AppendAttr(data, unix.NFTA_GEN_PROC_NAME, cstring(name))
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)}, Data: data}
}

// A batch touches the watched table when one of its announcements names
// it in family inet; its end says who committed it.
func TestCommitReader(t *testing.T) {
	r := commitReader{table: "ftpnft"}
	for _, tt := range []struct {
		name    string
		batch   []netlink.Message
		touched bool
	}{
		{"nft flush ruleset", []netlink.Message{
			announcement(unix.NFT_MSG_DELRULE, unix.NFPROTO_INET, "ftpnft"),
			announcement(unix.NFT_MSG_DELCHAIN, unix.NFPROTO_INET, "ftpnft"),
			announcement(unix.NFT_MSG_DELTABLE, unix.NFPROTO_INET, "ftpnft"),
		}, true},
		{"another table", []netlink.Message{announcement(unix.NFT_MSG_NEWRULE, unix.NFPROTO_INET, "firewalld")}, false},
		{"same name, other family", []netlink.Message{announcement(unix.NFT_MSG_DELTABLE, unix.NFPROTO_IPV4, "ftpnft")}, false},
		{"a set element", []netlink.Message{
			announcement(unix.NFT_MSG_NEWRULE, unix.NFPROTO_INET, "other"),
			announcement(unix.NFT_MSG_DELSETELEM, unix.NFPROTO_INET, "ftpnft"),
		}, true},
	} {
		for _, m := range tt.batch {
			if _, ok := r.take(m); ok {
				t.Fatalf("%s: a commit before the batch's end", tt.name)
			}
		}
		c, ok := r.take(newGen(7, 1234, "nft"))
		if !ok || c.Touched != tt.touched || c.Gen != 7 || c.PID != 1234 || c.Process != "nft" {
			t.Errorf("%s: %+v, %v; want touched %v by nft 1234 at generation 7", tt.name, c, ok, tt.touched)
		}
	}
	// Other subsystems' messages are not nf_tables' announcements.
	if _, ok := r.take(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_NEWGEN)}, Data: make([]byte, 4)}); ok {
		t.Error("a conntrack message was taken for a commit")
	}
}
