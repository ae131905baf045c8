package sources

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduleNext(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return v.UTC()
	}
	cases := []struct {
		name, cron, tz string
		after, want    string
	}{
		{"hourly utc", "0 * * * *", "", "2025-03-01T10:15:00Z", "2025-03-01T11:00:00Z"},
		{"seconds field", "*/5 * * * * *", "", "2025-03-01T10:15:02Z", "2025-03-01T10:15:05Z"},
		{"descriptor", "@daily", "", "2025-03-01T10:15:00Z", "2025-03-02T00:00:00Z"},
		{"daily in Paris (winter, UTC+1)", "0 3 * * *", "Europe/Paris", "2025-01-10T12:00:00Z", "2025-01-11T02:00:00Z"},
		{"daily in Paris (summer, UTC+2)", "0 3 * * *", "Europe/Paris", "2025-07-10T12:00:00Z", "2025-07-11T01:00:00Z"},
		{"daily in New York", "30 9 * * 1-5", "America/New_York", "2025-03-07T15:00:00Z", "2025-03-10T13:30:00Z"},
		// Spring forward: 02:30 does not exist on 30 March in Paris (02:00
		// → 03:00); the fire happens at the first instant after the gap,
		// not skipped to the next day.
		{"DST gap Paris", "30 2 * * *", "Europe/Paris", "2025-03-29T12:00:00Z", "2025-03-30T01:00:00Z"},
		// The day after the gap is back to normal.
		{"after DST gap", "30 2 * * *", "Europe/Paris", "2025-03-30T02:00:00Z", "2025-03-31T00:30:00Z"},
		// Fall back: 02:30 happens twice on 26 October in Paris; it fires
		// once, at the first.
		{"DST overlap first", "30 2 * * *", "Europe/Paris", "2025-10-25T12:00:00Z", "2025-10-26T00:30:00Z"},
		{"DST overlap not twice", "30 2 * * *", "Europe/Paris", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"},
		{"hourly across fall back", "0 * * * *", "Europe/Paris", "2025-10-26T00:30:00Z", "2025-10-26T01:00:00Z"},
		{"Kolkata half-hour offset", "0 9 * * *", "Asia/Kolkata", "2025-03-01T00:00:00Z", "2025-03-01T03:30:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSchedule(c.cron, c.tz)
			require.NoError(t, err)
			require.Equal(t, utc(c.want), s.Next(utc(c.after)))
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, c := range []struct{ cron, tz, want string }{
		{"", "", "empty"},
		{"61 * * * *", "", "invalid schedule"},
		{"* * *", "", "invalid schedule"},
		{"0 * * * *", "Mars/Olympus", "unknown time zone"},
		{"CRON_TZ=UTC 0 * * * *", "", "time_zone"},
		{"@every 5s", "", "@every"},
	} {
		_, err := ParseSchedule(c.cron, c.tz)
		require.ErrorIs(t, err, ErrInvalidSchedule, c.cron)
		require.ErrorContains(t, err, c.want)
	}
}

func TestScheduleDue(t *testing.T) {
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	hourly, err := ParseSchedule("0 * * * *", "")
	require.NoError(t, err)
	perSecond, err := ParseSchedule("* * * * * *", "")
	require.NoError(t, err)
	cases := []struct {
		name      string
		s         *Schedule
		last, now time.Time
		want      time.Time
	}{
		{"not yet", hourly, base, base.Add(59 * time.Minute), time.Time{}},
		{"on time", hourly, base, base.Add(time.Hour), base.Add(time.Hour)},
		{"missed many: only the latest", hourly, base, base.Add(5*time.Hour + 10*time.Minute), base.Add(5 * time.Hour)},
		{"per second down a week", perSecond, base, base.Add(7*24*time.Hour + 500*time.Millisecond), base.Add(7 * 24 * time.Hour)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.s.Due(c.last, c.now)
			require.Equal(t, !c.want.IsZero(), ok)
			require.Equal(t, c.want, got)
		})
	}
}

func TestFireJobID(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))
	require.Equal(t, "nightly-1740819600", FireJobID("nightly", at))
	long := "a123456789012345678901234567890123456789012345678"[:MaxIDLen]
	require.LessOrEqual(t, len(FireJobID(long, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))), 64)
}
