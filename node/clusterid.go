package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/kvd-project/kvd/statemachine"
)

// The cluster ID names one cluster for as long as it lives: registry
// entries carry it, so that a node can tell a running cluster's instances
// from a dead or foreign one's. It lives in the replicated metadata, so
// every member (and every snapshot) has the same one, joiners included.
//
// Dragonboat has no such ID and the state machine has no compare on the
// metadata keyspace, so it is set without one: a leader that finds no
// "cluster/<id>" row proposes one with a random ID, and the cluster's ID
// is the row created first (lowest create revision, then lowest key). Two
// leaders racing may each write a row; every node still picks the same
// one, and it never changes while the cluster lives: a later row has a
// higher revision, and nothing in a running cluster deletes the rows.
// Only a restore does (backup.go, dropOldCluster, before the restored
// node serves): the cluster made from a backup is a new one, and its
// first leader gives it a new ID. A cluster that ran before the ID
// existed gets one from its next leader.

const metaClusterPrefix = "cluster/"

// ClusterID is the cluster's ID (hex), or "" while it is not known here
// yet (before catch-up, or before the first leader wrote it).
func (n *Node) ClusterID() string {
	if id := n.clusterID.Load(); id != nil {
		return *id
	}
	id, err := n.readClusterID()
	if err != nil || id == "" {
		return ""
	}
	n.clusterID.Store(&id)
	return id
}

// readClusterID reads the earliest "cluster/" row from local state.
func (n *Node) readClusterID() (string, error) {
	v, err := n.nh.StaleRead(ShardID, statemachine.RangeQuery{
		Start: []byte(metaClusterPrefix), End: statemachine.PrefixEnd([]byte(metaClusterPrefix)), Meta: true,
	})
	if err != nil {
		return "", fmt.Errorf("read cluster ID: %w", err)
	}
	return earliestClusterID(v.(statemachine.RangeResult).KVs), nil
}

// earliestClusterID picks the row created first (ties: the lowest key).
func earliestClusterID(kvs []statemachine.KeyValue) string {
	var best *statemachine.KeyValue
	for i := range kvs {
		kv := &kvs[i]
		if best == nil || kv.CreateRevision < best.CreateRevision {
			best = kv
		}
	}
	if best == nil {
		return ""
	}
	return string(best.Key[len(metaClusterPrefix):])
}

// settleClusterID runs until the cluster ID is known here: while none is,
// a ready leader writes one. A follower waits for the leader's row to be
// applied. It returns when the ID is known or ctx ends.
func (n *Node) settleClusterID(ctx context.Context) {
	for ctx.Err() == nil && n.ClusterID() == "" {
		if l := n.Local(); l.Ready && l.LeaderID == n.id.ReplicaID {
			if err := n.proposeClusterID(ctx); err != nil {
				n.log.Debug("propose cluster ID", "err", err)
			}
			continue
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return
		}
	}
	if id := n.ClusterID(); id != "" {
		n.log.Info("cluster ID", "cluster_id", id)
	}
}

func (n *Node) proposeClusterID(ctx context.Context) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	key := []byte(metaClusterPrefix + hex.EncodeToString(b))
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := n.Propose(pctx, []statemachine.Command{{Ops: []statemachine.Op{{Type: statemachine.OpMetaPut, Key: key}}}})
	if err != nil {
		sleep(ctx, 250*time.Millisecond)
	}
	return err
}
