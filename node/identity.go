package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Origin records how a replica was born; it decides the role it restarts with.
type Origin string

const (
	// OriginBootstrap: an initial member (static cluster or single node).
	OriginBootstrap Origin = "bootstrap"
	// OriginJoin: added to a running cluster as a non-voting member.
	OriginJoin Origin = "join"
)

const identityFile = "identity.json"

// Identity is the node's persistent identity, written and fsynced before the
// first StartReplica and never changed afterwards.
type Identity struct {
	ReplicaID ReplicaID `json:"replica_id"`
	Origin    Origin    `json:"origin"`
	RaftAddr  string    `json:"raft_addr"`
	APIAddr   string    `json:"api_addr,omitempty"`
	Created   time.Time `json:"created"`
}

// loadIdentity returns nil, nil when the data dir has no identity yet.
func loadIdentity(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): restore it from a backup, or move the data dir away to start afresh", filepath.Join(dir, identityFile), err)
	}
	if id.ReplicaID == 0 || (id.Origin != OriginBootstrap && id.Origin != OriginJoin) {
		return nil, fmt.Errorf("%s is invalid (replica_id %d, origin %q)", filepath.Join(dir, identityFile), id.ReplicaID, id.Origin)
	}
	return &id, nil
}

// saveIdentity writes the identity durably: temp file, fsync, rename, fsync dir.
func saveIdentity(dir string, id Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, identityFile, append(b, '\n'))
}

func writeFileAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
