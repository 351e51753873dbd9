// Package nfttest is a fake kernel for testing code that uses package nft
// without privileges: nft.Apply, nft.ReadStatus, nft.Remove and nft.Dump
// work against it as against the kernel's nf_tables, in memory.
//
//	fake := nfttest.New()
//	res, err := nft.Apply(ctx, rs, fake.Option())
//	fmt.Print(fake.Dump())
//
// It keeps what the kernel keeps (tables, ct helper objects, sets and their
// elements, chains, rules), answers dumps with it, and applies a batch to a
// copy that replaces what it holds only when every message of the batch
// succeeded, as the kernel's transactions do: a failed transaction changes
// nothing. Each committed batch moves the ruleset generation on, and a batch
// begun at an older generation is refused, as the kernel refuses it.
// Failures and other writers can be injected. ftpnft's own tests use the
// same fake.
package nfttest
