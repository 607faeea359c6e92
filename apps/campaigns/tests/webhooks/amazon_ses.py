"""Amazon SES's tracking webhooks as it posts them through SNS (sources: __init__.py)."""

import json
import uuid

from .common import CLICK_URL, Hook, nudge_metadata

# -- Amazon SES ------------------------------------------------------------------------
# AWS docs: SES Developer Guide, "Examples of event data that Amazon SES publishes to
# Amazon SNS" (event-publishing-retrieving-sns-examples) for the SES event; SNS
# Developer Guide, "HTTP/HTTPS notification JSON format" and "HTTP/HTTPS headers" for
# the envelope SNS posts (JSON as text/plain, x-amz-sns-* headers).

SES_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
SES_USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X)"


def amazon_ses(kind: str, *, message_id: int | None, esp_id: str, to: str) -> Hook:
    headers = [
        {"name": "From", "value": "shop@example.com"},
        {"name": "To", "value": to},
        {"name": "Subject", "value": "Welcome"},
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "Content-Type", "value": "multipart/alternative"},
        # anymail's SES backend sends tags and metadata as these two headers
        {"name": "X-Tag", "value": "welcome"},
    ]
    if message_id is not None:
        headers.append(
            {"name": "X-Metadata", "value": json.dumps(nudge_metadata(message_id))}
        )
    mail = {
        "timestamp": "2016-10-19T23:20:52.240Z",
        "source": "shop@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/shop@example.com",
        "sendingAccountId": "123456789012",
        "messageId": esp_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {
            "from": ["shop@example.com"],
            "to": [to],
            "messageId": esp_id,
            "subject": "Welcome",
        },
        "tags": {
            "ses:configuration-set": ["nudge"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"],
            "ses:caller-identity": ["nudge"],
        },
    }
    feedback_id = f"01000157c44f053b-{uuid.uuid4()}-000000"
    samples = {
        # "Delivery record"
        "delivered": {
            "eventType": "Delivery",
            "delivery": {
                "timestamp": "2016-10-19T23:21:04.133Z",
                "processingTimeMillis": 11893,
                "recipients": [to],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "mta.example.com",
            },
        },
        # "Bounce record" (bounceType Permanent)
        "bounced": {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": to,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; mta.example.com",
            },
        },
        # "Bounce record" with bounceType Transient (see "Bounce types": MailboxFull)
        "soft_bounced": {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Transient",
                "bounceSubType": "MailboxFull",
                "bouncedRecipients": [
                    {
                        "emailAddress": to,
                        "action": "failed",
                        "status": "4.2.2",
                        "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
                    }
                ],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; mta.example.com",
            },
        },
        # "Complaint record"
        "complained": {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": to}],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "userAgent": SES_USER_AGENT,
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2017-08-05T00:41:02.669Z",
            },
        },
        # "Subscription record" (list management: the recipient used the
        # unsubscribe link or header of a message sent to a contact list); anymail
        # reports this event type as "unknown"
        "unsubscribed": {
            "eventType": "Subscription",
            "subscription": {
                "contactList": "ContactListName",
                "timestamp": "2022-01-12T01:00:14.340Z",
                "source": "UnsubscribeHeader",
                "newTopicPreferences": {
                    "unsubscribeAll": True,
                    "topicSubscriptionStatus": [
                        {
                            "topicName": "ExampleTopicName",
                            "subscriptionStatus": "OptOut",
                        }
                    ],
                },
                "oldTopicPreferences": {
                    "unsubscribeAll": False,
                    "topicSubscriptionStatus": [
                        {"topicName": "ExampleTopicName", "subscriptionStatus": "OptIn"}
                    ],
                },
            },
        },
        # "Open record"
        "opened": {
            "eventType": "Open",
            "open": {
                "ipAddress": "192.0.2.1",
                "timestamp": "2017-08-09T22:00:19.652Z",
                "userAgent": SES_USER_AGENT,
            },
        },
        # "Click record"
        "clicked": {
            "eventType": "Click",
            "click": {
                "ipAddress": "192.0.2.1",
                "link": CLICK_URL,
                "linkTags": {"samplekey0": ["samplevalue0"]},
                "timestamp": "2017-08-09T23:51:25.570Z",
                "userAgent": SES_USER_AGENT,
            },
        },
    }
    ses_event = {**samples[kind], "mail": mail}
    sns_message_id = str(uuid.uuid4())
    notification = {
        "Type": "Notification",
        "MessageId": sns_message_id,
        "TopicArn": SES_TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2017-08-09T23:51:26.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4Vbe"
        "S0QHVCkhRS7",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/"
        "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={SES_TOPIC}:c9135db0-26c4-47ec-8998-413945fb5a96",
    }
    return Hook(
        "/webhooks/anymail/amazon_ses/tracking/",
        json.dumps(notification),
        content_type="text/plain; charset=UTF-8",
        headers={
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": sns_message_id,
            "x-amz-sns-topic-arn": SES_TOPIC,
            "x-amz-sns-subscription-arn": f"{SES_TOPIC}:c9135db0-26c4-47ec-8998",
            "User-Agent": "Amazon Simple Notification Service Agent",
        },
    )
