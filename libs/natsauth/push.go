package natsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
)

// How long Push listens for answers: the servers of a cluster answer a
// ping or an update within a few milliseconds of each other, so a quiet
// pause after the last answer ends a round early.
const (
	pushRound = 2 * time.Second
	pushQuiet = 300 * time.Millisecond
)

// Push sends the Outpost account's current JWT to the servers nc reaches
// and returns once every server of the cluster confirmed it; nc must be a
// connection of a RoleSystem user. Each server applies the update itself
// (a revoked user's connections are closed at once), so a revocation is in
// force everywhere when Push returns nil. The servers are counted with a
// ping of the system account; a server that missed the update (interest
// between cluster routes still forming, a server restarting) gets it
// again until ctx ends, then Push returns ErrPushIncomplete.
func (a *Authority) Push(ctx context.Context, nc *nats.Conn) error {
	a.mu.Lock()
	token := a.accountJWT
	a.mu.Unlock()
	subject := "$SYS.REQ.ACCOUNT." + a.accountPub + ".CLAIMS.UPDATE"
	want := 0
	updated := map[string]bool{}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(0),
	), ctx)
	err := backoff.Retry(func() error {
		// Servers that join while Push runs are counted too.
		servers, err := gather(ctx, nc, "$SYS.REQ.SERVER.PING", nil, 0)
		if err != nil {
			return err
		}
		want = max(want, len(servers))
		answers, err := gather(ctx, nc, subject, []byte(token), want)
		if err != nil {
			return err
		}
		for server, data := range answers {
			var resp struct {
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(data, &resp); err != nil {
				return backoff.Permanent(fmt.Errorf("natsauth: push account: answer of %s: %w", server, err))
			}
			if resp.Error != nil {
				return backoff.Permanent(fmt.Errorf("%w: %s: %s", ErrPushRejected, server, resp.Error.Description))
			}
			updated[server] = true
		}
		if want == 0 || len(updated) < want {
			return fmt.Errorf("%w: %d of %d servers", ErrPushIncomplete, len(updated), want)
		}
		return nil
	}, b)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %d of %d servers (%w)", ErrPushIncomplete, len(updated), want, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("natsauth: push account: %w", err)
	}
	return nil
}

// gather publishes data on subject with a reply inbox and collects the
// answers by server id, until n answered (n > 0), a quiet pause after the
// last answer, or pushRound.
func gather(ctx context.Context, nc *nats.Conn, subject string, data []byte, n int) (map[string][]byte, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("natsauth: push account: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, fmt.Errorf("natsauth: push account: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, pushRound)
	defer cancel()
	out := map[string][]byte{}
	for n <= 0 || len(out) < n {
		wait := pushRound
		if len(out) > 0 {
			wait = pushQuiet
		}
		wctx, wcancel := context.WithTimeout(rctx, wait)
		msg, err := sub.NextMsgWithContext(wctx)
		wcancel()
		if err != nil {
			break // the round or the quiet pause is over
		}
		var from struct {
			Server struct {
				ID string `json:"id"`
			} `json:"server"`
		}
		if json.Unmarshal(msg.Data, &from) != nil || from.Server.ID == "" {
			continue
		}
		out[from.Server.ID] = msg.Data
	}
	return out, ctx.Err()
}
