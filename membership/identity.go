package membership

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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
	// InitialMembers of the cluster this replica bootstrapped (origin
	// bootstrap); told to peers forming a cluster (--bootstrap-expect).
	InitialMembers map[ReplicaID]string `json:"initial_members,omitempty"`
	// JoinToken (origin join) proves to the cluster that a later Join under
	// this ReplicaID comes from this node: made at its first join, sent with
	// every Join; the member's metadata keeps only its hash.
	JoinToken string `json:"join_token,omitempty"`
	// Replaced is the ID this node had before it lost its Raft state and
	// rejoined under this one (--rejoin); --node-id may still name it.
	Replaced ReplicaID `json:"replaced,omitempty"`
}

// NewJoinToken returns a random 256-bit token, hex-encoded.
func NewJoinToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// HashToken is what a member's metadata stores of its join token ("" for
// no token: such a member can never be admitted again).
func HashToken(token string) string {
	if token == "" {
		return ""
	}
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenMatches compares token against a stored hash in constant time; an
// empty hash or token never matches.
func tokenMatches(hash, token string) bool {
	if hash == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(hash)) == 1
}

// LoadIdentity returns nil, nil when the data dir has no identity yet.
func LoadIdentity(dir string) (*Identity, error) {
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

// SaveIdentity writes the identity durably: temp file, fsync, rename, fsync dir.
func SaveIdentity(dir string, id Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(dir, identityFile, append(b, '\n'))
}

const removedFile = "removed.json"

const pendingIDFile = "pending-id"

const startedFile = "started"

// MarkStarted records, durably, that the replica in the identity is about
// to be started by Dragonboat for the first time. Written before
// StartOnDiskReplica, never after: from then on the replica may have voted
// or acknowledged entries, so an identity with this marker but without Raft
// state means the Raft state was lost (not that the node crashed before its
// first start), and the replica must never start again with an empty log.
func MarkStarted(dir string) error {
	if HasStarted(dir) {
		return nil
	}
	return WriteFileAtomic(dir, startedFile, fmt.Appendf(nil, "%s\n", time.Now().UTC().Format(time.RFC3339)))
}

// HasStarted tells whether the data dir holds the started marker.
func HasStarted(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, startedFile))
	return err == nil
}

// PendingID returns the replica ID a node forming a cluster uses before its
// identity is decided, creating it once, so that a restart during formation
// keeps the ID that its peers may already have agreed on.
func PendingID(dir string) (ReplicaID, error) {
	b, err := os.ReadFile(filepath.Join(dir, pendingIDFile))
	if err == nil {
		var id uint64
		if _, err := fmt.Sscanf(string(b), "%d", &id); err == nil && id != 0 {
			return ReplicaID(id), nil
		}
	}
	id := NewReplicaID()
	if err := WriteFileAtomic(dir, pendingIDFile, fmt.Appendf(nil, "%d\n", id)); err != nil {
		return 0, err
	}
	return id, nil
}

// Removal records that this replica was removed from the cluster.
type Removal struct {
	ReplicaID ReplicaID `json:"replica_id"`
	At        time.Time `json:"at"`
	Hint      string    `json:"hint"`
}

// MarkRemoved writes the removal marker: every later start refuses to serve
// (or wipes and joins under a new ID with --rejoin).
func MarkRemoved(dir string, id ReplicaID) error {
	b, _ := json.MarshalIndent(Removal{ReplicaID: id, At: time.Now().UTC(),
		Hint: "this replica was removed from the cluster; restart with --rejoin to join again under a new ID"}, "", "  ")
	return WriteFileAtomic(dir, removedFile, append(b, '\n'))
}

// IsRemoved tells whether the data dir holds a removal marker.
func IsRemoved(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, removedFile))
	return err == nil
}

// Wipe deletes the replica's identity, Raft state and data so that it can
// join again under a new ID. Only for a removed replica or one whose Raft
// state was lost (--rejoin).
func Wipe(dir string, stateDirs ...string) error {
	for _, d := range stateDirs {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	for _, f := range []string{identityFile, cacheFile, removedFile, pendingIDFile, startedFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// WriteFileAtomic writes data to dir/name durably and whole: into a
// temporary file that is fsynced, renamed over name, then the directory
// fsynced, so that after a crash name holds the old content or the new,
// never a part, and a file that WriteFileAtomic returned for is there. It
// writes every marker and record of the data dir (node's restoring marker
// too).
func WriteFileAtomic(dir, name string, data []byte) error {
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
