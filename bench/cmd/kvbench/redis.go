package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTarget talks to one Redis (the first endpoint). Redis has one copy of
// the data: "read" and "stale" are the same GET.
type redisTarget struct {
	cli *redis.Client
}

func newRedisTarget(ctx context.Context, c *config) (*redisTarget, error) {
	cli := redis.NewClient(&redis.Options{
		Addr:         c.endpoints[0],
		PoolSize:     c.clients + 4,
		MinIdleConns: c.clients,
		DialTimeout:  5 * time.Second,
		ReadTimeout:  c.timeout,
		WriteTimeout: c.timeout,
	})
	if err := cli.Ping(ctx).Err(); err != nil {
		cli.Close()
		return nil, err
	}
	return &redisTarget{cli: cli}, nil
}

func (t *redisTarget) Put(ctx context.Context, key string, value []byte) error {
	return t.cli.Set(ctx, key, value, 0).Err()
}

func (t *redisTarget) Get(ctx context.Context, key string, stale bool) error {
	err := t.cli.Get(ctx, key).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

func (t *redisTarget) Close() error { return t.cli.Close() }
