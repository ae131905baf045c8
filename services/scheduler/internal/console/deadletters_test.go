package console_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	subjects := queue.NewSubjects("outpost")
	// One published straight onto the dead-letter subject (not
	// replayable), one as the queue library writes them.
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{Subject: subjects.DeadLetter("default", queue.RoleSubmit), Data: []byte("x")}))
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{
		Subject: subjects.DeadLetter("default", queue.RoleSubmit), Data: []byte{0xde, 0xad},
		Header: map[string]string{
			queue.HeaderDeadLetterReason: "max deliveries (3) exceeded", queue.HeaderDeadLetterSubject: subjects.Submit("default"),
			queue.HeaderDeadLetterAttempts: "3",
		},
	}))

	b := e.browser()
	token := b.signIn(e.admin)

	var page string
	defer func() {
		if t.Failed() {
			t.Log(page)
		}
	}()
	require.Eventually(t, func() bool {
		_, page = b.get("/deadletters")
		return len(regexpAll(`data-deadletter="`, page)) == 2
	}, waitFor, tick)
	require.Contains(t, page, "max deliveries (3) exceeded")
	require.Contains(t, page, string(queue.ReasonPublishedDirectly))
	require.Len(t, regexpAll(`action="/deadletters/[0-9]+/replay"`, page), 1, "only the one with its original subject can be replayed")
	id := regexpAll(`action="/deadletters/([0-9]+)/replay"`, page)[0][1]

	viewer := e.browser()
	vtoken := viewer.signIn(e.key("viewer"))
	_, vpage := viewer.get("/deadletters")
	require.Contains(t, vpage, "max deliveries (3) exceeded")
	require.NotContains(t, vpage, "/replay", "a viewer sees no replay button")
	resp, _ := viewer.post("/deadletters/"+id+"/replay", url.Values{"csrf": {vtoken}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "and a forged replay is refused")

	resp, _ = b.post("/deadletters/"+id+"/replay", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, page = b.get(resp.Header.Get("Location"))
	require.Contains(t, page, "Dead letter "+id+" replayed.")
}
