package sqs

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// FuzzBody checks that any payload survives encodeBody and decodeBody, and
// that any body SQS hands over either decodes to a payload that encodes
// back to a body reading the same, or is an error.
func FuzzBody(f *testing.F) {
	f.Add([]byte{}, "")
	f.Add([]byte("hello"), "aGVsbG8=")
	f.Add([]byte{0, 0xff, 0x10, '\n'}, "AP8QCg==")
	f.Add([]byte("-"), emptyBody)
	f.Add([]byte{1}, "aGVs\nbG8=")
	f.Add([]byte{2}, "not base64!")
	f.Add([]byte{3}, "aGVsbG8")

	f.Fuzz(func(t *testing.T, data []byte, body string) {
		enc := encodeBody(data)
		require.NotEmpty(t, enc, "SQS refuses empty bodies")
		got, err := decodeBody(enc)
		require.NoError(t, err)
		require.Len(t, got, len(data))
		require.True(t, len(data) == 0 || string(data) == string(got), "payload changed")

		dec, err := decodeBody(body)
		if err != nil {
			require.ErrorContains(t, err, "decode base64 body")
			return
		}
		again, err := decodeBody(encodeBody(dec))
		require.NoError(t, err)
		require.Equal(t, string(dec), string(again))
	})
}

// FuzzAttributes checks that a subject, dedupe id and headers survive
// encodeAttributes and decodeAttributes within SQS's rules for attributes,
// and that attributes from anyone else decode to an error or to headers,
// never a panic. Headers are written "k\x00v\x00k\x00v".
func FuzzAttributes(f *testing.F) {
	f.Add("outpost.acme.jobs.remote", "", queue.HeaderType+"\x00outpost.jobs.v1.JobStatus\x00X-Trace-Id\x00abc", []byte(`{"a":"b"}`))
	f.Add("outpost.acme.jobs.remote", "job-1", "X-Empty\x00", []byte(`{`))
	f.Add("s", "d", "X Space\x00v\x00AWS.Thing\x00v\x00outpost.subject\x00spoof", []byte(`{"a":1}`))
	f.Add("s", "", "a..b\x00v\x00X-Bad\x00a\x01b\x00X-Name\x00café ✓", []byte(`null`))
	f.Add("s", "", strings.Repeat("X-H\x00v\x00", 9)+"a\x00b\x00c\x00d\x00e\x00f\x00g\x00h\x00i\x00j\x00k\x00l\x00m\x00n\x00o\x00p\x00q\x00r", []byte(`"x"`))
	f.Add("", "", "", []byte{})

	f.Fuzz(func(t *testing.T, subject, dedupe, headerText string, packed []byte) {
		header := map[string]string{}
		if headerText != "" {
			kv := strings.Split(headerText, "\x00")
			for i := 0; i < len(kv); i += 2 {
				v := ""
				if i+1 < len(kv) {
					v = kv[i+1]
				}
				header[kv[i]] = v
			}
		}
		attrs := encodeAttributes(subject, dedupe, header)
		require.LessOrEqual(t, len(attrs), maxAttributes)
		for k, v := range attrs {
			require.True(t, validAttrName(k), "attribute name %q", k)
			if aws.ToString(v.DataType) == typeString && k != attrSubject && k != attrDedupe {
				require.True(t, validAttrValue(aws.ToString(v.StringValue)), "attribute %q value", k)
			}
		}
		gotSubject, gotDedupe, gotHeader, err := decodeAttributes(attrs)
		if subject == "" {
			require.ErrorIs(t, err, errNotOutpost)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, subject, gotSubject)
		require.Equal(t, dedupe, gotDedupe)
		if headersText(header) {
			require.Equal(t, header, gotHeader)
		} else {
			for k, v := range gotHeader {
				require.True(t, utf8.ValidString(k) && utf8.ValidString(v), "headers are text: others come back made valid")
			}
		}

		// Attributes set by something else, or tampered with.
		foreign := map[string]types.MessageAttributeValue{
			attrHeaders: {DataType: aws.String(typeBinary), BinaryValue: packed},
			"X-Other":   stringAttr(dedupe),
		}
		if subject != "" {
			foreign[attrSubject] = stringAttr(subject)
		}
		gotSubject, _, gotHeader, err = decodeAttributes(foreign)
		require.NotNil(t, gotHeader)
		var want map[string]string
		if json.Unmarshal(packed, &want) != nil {
			require.ErrorContains(t, err, attrHeaders)
			return
		}
		if subject == "" {
			require.ErrorIs(t, err, errNotOutpost)
			return
		}
		require.NoError(t, err)
		require.Equal(t, subject, gotSubject)
		for k, v := range want {
			if k != "X-Other" {
				require.Equal(t, v, gotHeader[k])
			}
		}
	})
}

// headersText reports whether every header name and value is valid UTF-8.
func headersText(h map[string]string) bool {
	for k, v := range h {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}
