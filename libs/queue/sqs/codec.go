package sqs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message attributes the backend itself sets. Their names start with
// "outpost." (lower case, with a dot), which no header can use as its own
// attribute, so they never clash with headers such as "Outpost-Type".
const (
	// attrSubject carries the full subject the message was published to.
	attrSubject = "outpost.subject"
	// attrDedupe carries Message.DedupeID on standard queues, for the
	// consumer-side duplicate check.
	attrDedupe = "outpost.dedupe-id"
	// attrHeaders carries every header as one JSON object when they do not
	// fit one attribute each (see encodeAttributes).
	attrHeaders = "outpost.headers"
)

// maxAttributes is SQS's limit of message attributes per message.
const maxAttributes = 10

// emptyBody stands for an empty payload: SQS refuses empty bodies, and "-"
// is not valid base64.
const emptyBody = "-"

const (
	typeString = "String"
	typeBinary = "Binary"
)

// encodeBody is the message body for data: standard base64, since bodies
// must be text and payloads are binary protobuf.
func encodeBody(data []byte) string {
	if len(data) == 0 {
		return emptyBody
	}
	return base64.StdEncoding.EncodeToString(data)
}

// decodeBody reverses encodeBody.
func decodeBody(body string) ([]byte, error) {
	if body == emptyBody || body == "" {
		return []byte{}, nil
	}
	data, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("decode base64 body: %w", err)
	}
	return data, nil
}

// encodeAttributes builds the message attributes of a message: the
// backend's own (subject, dedupe id) and the headers. Each header becomes a
// String attribute of the same name when every header can: its name is a
// valid attribute name not starting with "outpost." or "aws."/"amazon.",
// its value non-empty valid text, and all of them fit SQS's 10 attributes.
// Otherwise all headers travel together in attrHeaders as JSON (Binary),
// which keeps them exact (empty values, any names).
func encodeAttributes(subject, dedupeID string, header map[string]string) map[string]types.MessageAttributeValue {
	attrs := make(map[string]types.MessageAttributeValue, len(header)+2)
	attrs[attrSubject] = stringAttr(subject)
	if dedupeID != "" {
		attrs[attrDedupe] = stringAttr(dedupeID)
	}
	if len(header) == 0 {
		return attrs
	}
	each := len(attrs)+len(header) <= maxAttributes
	for k, v := range header {
		if !each {
			break
		}
		each = validAttrName(k) && !reservedAttrName(k) && validAttrValue(v)
	}
	if each {
		for k, v := range header {
			attrs[k] = stringAttr(v)
		}
		return attrs
	}
	packed, _ := json.Marshal(header) // a map[string]string always marshals
	attrs[attrHeaders] = types.MessageAttributeValue{DataType: aws.String(typeBinary), BinaryValue: packed}
	return attrs
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String(typeString), StringValue: aws.String(v)}
}

// errNotOutpost marks a message without the outpost.subject attribute:
// sent by something other than this package.
var errNotOutpost = errors.New("message has no " + attrSubject + " attribute: not sent by outpost")

// decodeAttributes reverses encodeAttributes. Attributes the backend does
// not know become headers when they are String (or Number) attributes.
func decodeAttributes(attrs map[string]types.MessageAttributeValue) (subject, dedupeID string, header map[string]string, err error) {
	header = make(map[string]string, len(attrs))
	for k, v := range attrs {
		switch k {
		case attrSubject:
			subject = aws.ToString(v.StringValue)
		case attrDedupe:
			dedupeID = aws.ToString(v.StringValue)
		case attrHeaders:
			packed := map[string]string{}
			if uerr := json.Unmarshal(v.BinaryValue, &packed); uerr != nil {
				err = fmt.Errorf("decode %s attribute: %w", attrHeaders, uerr)
				continue
			}
			for hk, hv := range packed {
				header[hk] = hv
			}
		default:
			if v.StringValue != nil {
				header[k] = *v.StringValue
			}
		}
	}
	if subject == "" && err == nil {
		err = errNotOutpost
	}
	return subject, dedupeID, header, err
}

// messageSize is the size SQS counts against its message limit: the body
// plus, for each attribute, its name, data type and value.
func messageSize(body string, attrs map[string]types.MessageAttributeValue) int {
	n := len(body)
	for k, v := range attrs {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// validAttrName follows SQS's rules for message attribute names: up to 256
// characters of [A-Za-z0-9_.-], no leading, trailing or double period.
func validAttrName(k string) bool {
	if k == "" || len(k) > 256 || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// reservedAttrName reports names that SQS reserves ("AWS.", "Amazon.") or
// this package does ("outpost.").
func reservedAttrName(k string) bool {
	l := strings.ToLower(k)
	return strings.HasPrefix(l, "aws.") || strings.HasPrefix(l, "amazon.") || strings.HasPrefix(l, "outpost.")
}

// validAttrValue reports whether v can be a String attribute value:
// non-empty, valid UTF-8, and only the characters SQS accepts (#x9, #xA,
// #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF).
func validAttrValue(v string) bool {
	if v == "" || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// fifoToken makes s usable as a FIFO MessageGroupId or
// MessageDeduplicationId (up to 128 characters of alphanumerics and
// punctuation): kept when it already is, else replaced by a hash.
func fifoToken(s string) string {
	ok := len(s) > 0 && len(s) <= 128
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] > 0x20 && s[i] < 0x7f
	}
	if ok {
		return s
	}
	return "h-" + hashHex(s)
}
