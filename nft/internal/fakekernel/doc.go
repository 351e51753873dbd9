// Package fakekernel is an in-memory nf_tables: the fake kernel behind
// nfttest and nft's own tests. It lives apart from both so that nft's
// internal tests can use it without importing nfttest, which imports nft.
package fakekernel
