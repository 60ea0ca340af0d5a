package rpc

import "fmt"

// Limits bound what one request may carry. Violations are InvalidArgument
// errors that name the limit; nothing is written.
type Limits struct {
	MaxKeySize    int // bytes; keys are 1..MaxKeySize
	MaxValueSize  int // bytes
	MaxRangeLimit int // keys per Range response
	MaxRangeBytes int // bytes of keys + values per Range response (at least one key) and Watch message (at least one event)
	MaxTxnOps     int // compares + ops in one Txn
	// MaxStreamBytes bounds each of a Stream's two budgets: the requests
	// being served with their small answers, and the values of large gets
	// being read or waiting to be sent (stream.go). One value larger than
	// it is still served, alone.
	MaxStreamBytes int
}

// DefaultLimits: keys up to 4 KiB, values up to 1 MiB, 10,000 keys or 3 MiB
// of keys and values per range page (with each key's fields a page stays
// under the 4 MiB a plain grpc-go client takes by default: 4 MiB of 1 KiB
// values came to 4,252,479 bytes), 16 MiB stream budgets.
func DefaultLimits() Limits {
	return Limits{MaxKeySize: 4096, MaxValueSize: 1 << 20, MaxRangeLimit: 10000, MaxRangeBytes: 3 << 20,
		MaxTxnOps: 128, MaxStreamBytes: 16 << 20}
}

// Validate names the first bad limit.
func (l Limits) Validate() error {
	switch {
	case l.MaxKeySize < 1:
		return fmt.Errorf("max key size (%d) must be at least 1", l.MaxKeySize)
	case l.MaxValueSize < 0:
		return fmt.Errorf("max value size (%d) must not be negative", l.MaxValueSize)
	case l.MaxRangeLimit < 1:
		return fmt.Errorf("max range limit (%d) must be at least 1", l.MaxRangeLimit)
	case l.MaxRangeBytes < 1:
		return fmt.Errorf("max range bytes (%d) must be at least 1", l.MaxRangeBytes)
	case l.MaxTxnOps < 1:
		return fmt.Errorf("max txn ops (%d) must be at least 1", l.MaxTxnOps)
	case l.MaxStreamBytes < 1:
		return fmt.Errorf("max stream bytes (%d) must be at least 1", l.MaxStreamBytes)
	}
	return nil
}

// maxMessageBytes bounds a request message: the largest Txn plus framing.
func (l Limits) maxMessageBytes() int {
	return l.MaxTxnOps*(l.MaxKeySize+64) + 4*l.MaxValueSize + 64<<10
}

func (l Limits) checkKey(what string, key []byte) error {
	if len(key) == 0 {
		return invalid("%s: key is empty; keys must be 1..%d bytes", what, l.MaxKeySize)
	}
	if len(key) > l.MaxKeySize {
		return invalid("%s: key is %d bytes; the maximum key size is %d bytes", what, len(key), l.MaxKeySize)
	}
	return nil
}

func (l Limits) checkValue(what string, value []byte) error {
	if len(value) > l.MaxValueSize {
		return invalid("%s: value is %d bytes; the maximum value size is %d bytes", what, len(value), l.MaxValueSize)
	}
	return nil
}
