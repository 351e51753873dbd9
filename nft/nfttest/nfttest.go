package nfttest

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft"
	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

// Fake is an in-memory nf_tables. Its zero value is not ready: use New.
type Fake struct {
	k *fakekernel.Kernel
}

// New returns an empty fake kernel.
func New() *Fake { return &Fake{k: &fakekernel.Kernel{}} }

// Option makes the nft package talk to the fake instead of the kernel.
func (f *Fake) Option() nft.Option { return nft.WithKernel(f.k) }

// Dump returns what the fake holds, in nft syntax: every table of family
// inet as nft.Dump reads it, in the order they were created.
func (f *Fake) Dump() string {
	var b strings.Builder
	for _, name := range f.k.TableNames(unix.NFPROTO_INET) {
		text, err := nft.Dump(context.Background(), name, f.Option())
		if err != nil {
			text = fmt.Sprintf("# table inet %s: %v\n", name, err)
		}
		b.WriteString(text)
	}
	return b.String()
}

// Generation returns the ruleset's generation: 1 when new, one more for
// every committed batch.
func (f *Fake) Generation() uint32 { return f.k.Gen + 1 }

// Commits returns how many batches were committed.
func (f *Fake) Commits() int { return f.k.Batches }

// The kinds of batch message that Fail can reject. AddRule is also a rule
// replaced by handle, AddChain also a chain's policy changed.
const (
	AddTable       = "add table"
	DeleteTable    = "delete table"
	AddObject      = "add object"
	DeleteObject   = "delete object"
	AddSet         = "add set"
	DeleteSet      = "delete set"
	AddElements    = "add elements"
	DeleteElements = "delete elements"
	AddChain       = "add chain"
	DeleteChain    = "delete chain"
	AddRule        = "add rule"
	DeleteRule     = "delete rule"
)

var kinds = map[string]uint16{
	AddTable:       unix.NFT_MSG_NEWTABLE,
	DeleteTable:    unix.NFT_MSG_DELTABLE,
	AddObject:      unix.NFT_MSG_NEWOBJ,
	DeleteObject:   unix.NFT_MSG_DELOBJ,
	AddSet:         unix.NFT_MSG_NEWSET,
	DeleteSet:      unix.NFT_MSG_DELSET,
	AddElements:    unix.NFT_MSG_NEWSETELEM,
	DeleteElements: unix.NFT_MSG_DELSETELEM,
	AddChain:       unix.NFT_MSG_NEWCHAIN,
	DeleteChain:    unix.NFT_MSG_DELCHAIN,
	AddRule:        unix.NFT_MSG_NEWRULE,
	DeleteRule:     unix.NFT_MSG_DELRULE,
}

// Fail makes the fake reject the first message of kind (AddRule, ...) of
// every batch with errno, as the kernel rejects a message it cannot apply;
// the batch then changes nothing. Fail("", 0) stops failing.
func (f *Fake) Fail(kind string, errno syscall.Errno) error {
	if kind == "" {
		f.k.FailOn, f.k.FailErr = nil, 0
		return nil
	}
	t, ok := kinds[kind]
	if !ok {
		return fmt.Errorf("nfttest: unknown message kind %q", kind)
	}
	f.k.FailOn, f.k.FailErr = &t, errno
	return nil
}

// OtherWriter makes another writer commit once, right before the next
// batch arrives: the batch, built at the generation before, is refused, and
// nft reads again.
func (f *Fake) OtherWriter() { f.k.BeforeBatch = func() { f.k.Gen++ } }

// FlushTable deletes the rules of the inet table name, as `nft flush table
// inet NAME` does: chains with their policies, sets and objects stay.
func (f *Fake) FlushTable(name string) { f.k.FlushTable(name) }
