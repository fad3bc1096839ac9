package main

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdTarget uses the official client; -conns clients (gRPC connections) are
// shared by the workers, worker w using client w%conns.
type etcdTarget struct {
	clis []*clientv3.Client
}

func newEtcdTarget(ctx context.Context, c *config) (*etcdTarget, error) {
	t := &etcdTarget{}
	for i := 0; i < c.conns; i++ {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   c.endpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			Context:     ctx,
		})
		if err != nil {
			t.Close()
			return nil, err
		}
		t.clis = append(t.clis, cli)
	}
	return t, nil
}

func (t *etcdTarget) cli(ctx context.Context) *clientv3.Client {
	return t.clis[workerOf(ctx)%len(t.clis)]
}

func (t *etcdTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := t.cli(ctx).Put(ctx, key, string(value))
	return err
}

// Txn puts value on every key in one etcd transaction.
func (t *etcdTarget) Txn(ctx context.Context, keys []string, value []byte) error {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpPut(k, string(value))
	}
	_, err := t.cli(ctx).Txn(ctx).Then(ops...).Commit()
	return err
}

func (t *etcdTarget) Get(ctx context.Context, key string, stale bool) error {
	var err error
	if stale {
		_, err = t.cli(ctx).Get(ctx, key, clientv3.WithSerializable())
	} else {
		_, err = t.cli(ctx).Get(ctx, key) // linearizable by default
	}
	return err
}

func (t *etcdTarget) Close() error {
	for _, c := range t.clis {
		c.Close()
	}
	return nil
}
