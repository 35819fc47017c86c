"""The wording of every error message. Verbatim where a live answer or SendGrid's errors page gives one; the few
rules SendGrid documents without wording get a message in the same style (docs/EMULATOR.md lists them)."""

from __future__ import annotations

from typing import Final

_EG = '{"email": "example@example.com"} or {"email": "example@example.com", "name": "Example Recipient"}'
M_PERSONALIZATIONS_REQUIRED: Final = (
    "The personalizations field is required and must have at least one personalization."
)
M_TO_REQUIRED: Final = (
    "The to array is required for all personalization objects, and must have at least one email object with a "
    "valid email address."
)
M_FROM_REQUIRED: Final = (
    "The from object must be provided for every email send. It is an object that requires the email parameter, "
    f"but may also contain a name parameter. e.g. {_EG}"
)
M_TOO_MANY_PERSONALIZATIONS: Final = (
    "The personalization block is limited to {limit} personalizations per API request. You have provided {n} "
    "personalizations. Please consider splitting this into multiple requests and resending your request."
)
M_TOO_MANY_RECIPIENTS: Final = "There is a limit of {limit} total recipients (to + cc + bcc) per request."
M_DUPLICATE: Final = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first "
    "duplicate instance of [{email}] in the {where} field."
)
M_SUBJECT_EMPTY: Final = "The subject of your email must be a string at least one character in length."
M_SUBJECT_REQUIRED: Final = (
    "The subject is required. You can get around this requirement if you use a template with a subject defined or "
    "if every personalization has a subject defined."
)
M_CONTENT_REQUIRED: Final = (
    "The content param is required unless you are using a transactional template and have defined a template_ID."
)
M_CONTENT_EMPTY: Final = (
    "There must be at least one defined content block. We typically suggest both text/plain and text/html blocks "
    "are included, but only one block is required."
)
M_CONTENT_ORDER: Final = (
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain "
    "needs to be first, followed by text/html, followed by any other content."
)
M_CONTENT_ONCE: Final = "If present, text/plain and text/html may only be provided once."
M_CATEGORIES_LIMIT: Final = (
    "There is a limit of {limit} categories for each email that is sent. You provided {n} categories."
)
M_SEND_AT_AHEAD: Final = "Scheduling more than 72 hours in advance is forbidden."
M_HEADER_VALUES_MESSAGE: Final = "The header values must be strings."
M_HEADER_VALUES_PERSONALIZATION: Final = "All values of the headers object must be strings."
M_HEADER_DUPLICATE: Final = "The headers cannot contain duplicate keys."
M_HEADER_KEY_MESSAGE: Final = "Header keys cannot contain non-ASCII characters and empty spaces."
M_HEADER_KEY_PERSONALIZATION: Final = "Header keys cannot contain non-ASCII characters or empty spaces."
M_HEADER_RESERVED_MESSAGE: Final = "Header can not be one of the reserved keys."
M_HEADER_RESERVED_PERSONALIZATION: Final = "Header cannot be one of the reserved keys."
M_CUSTOM_ARGS_VALUES: Final = "All values of custom arguments object must be strings"
M_CUSTOM_ARGS_EMPTY: Final = "custom_args cannot be empty."
M_CUSTOM_ARGS_SIZE: Final = (
    "The combined size of both global and personalization custom arguments may not exceed {limit:,} bytes per "
    "personalization."
)
M_CUSTOM_ARGS_KEYS: Final = (
    "The combined global and personalization custom arguments may not have more than {limit} keys per "
    "personalization. You provided {n}."
)
M_SUBSTITUTIONS_VALUES: Final = (
    "The substitution values must be an object of key/value pairs, where the values are all strings."
)
M_SUBSTITUTIONS_KEYS: Final = "You are limited to {limit} substitutions per personalization. You provided {n}."
M_SUBSTITUTIONS_SIZE: Final = (
    "The substitutions of a personalization may not exceed {limit:,} bytes. You provided {n:,} bytes."
)
M_SUBSTITUTIONS_DYNAMIC: Final = "Substitutions may not be used with dynamic templating"
M_ASM_GROUP: Final = "The ASM group ID must be a valid Group ID on your account. You provided {value}."
M_ASM_DISPLAY: Final = "All ASM groups to display must be valid ASM groups IDs on your account. You provided {value}."
M_TEMPLATE: Final = "The Template ID must be a valid template id for your account. You provided {value}."
M_IP_POOL: Final = "The IP Pool name must be a valid pool name for your account. You provided {value}."
M_BATCH: Final = "The batch_id must be a valid batch ID for your account. You provided {value}."
M_REPLY_TO_EXCLUSIVE: Final = "reply_to is mutually exclusive with reply_to_list."
M_REPLY_TO_LIST_UNIQUE: Final = "Each email address in the reply_to_list should be unique."
M_BYPASS_COMBINED: Final = (
    "bypass_list_management cannot be combined with bypass_spam_management, bypass_bounce_management or "
    "bypass_unsubscribe_management."
)
M_NAME_SEPARATORS: Final = "The {kind} name cannot contain ';' or ','."
M_ATTACHMENT_BASE64: Final = "The attachment content must be base64 encoded."
M_ATTACHMENT_CHARS: Final = {
    "filename": "The filename of your attachment cannot contain ';', ',', or CRLF characters.",
    "type": "The type cannot contain ';', ',', or CRLF characters.",
    "content_id": "The content ID of your attachment cannot contain ';', ',', or CRLF characters.",
}
M_CONTENT_TYPE_CHARS: Final = "Cannot contain ';', or CRLF characters."
M_UNVERIFIED_SENDER: Final = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. "
    "Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the Sender Identity "
    "requirements"
)

# Documented wording for a wrong type under mail_settings / tracking_settings (SendGrid's errors page).
SETTING_TYPE_MESSAGES: Final = {
    **{
        f"mail_settings.{bypass}.enable": f"The {bypass.replace('_', ' ')} enable param should be a boolean value."
        for bypass in (
            "bypass_list_management", "bypass_spam_management", "bypass_bounce_management",
            "bypass_unsubscribe_management",
        )
    },
    "mail_settings.footer.enable": "The footer enable param should be a boolean value.",
    "mail_settings.footer.text": "The text/plain version of your footer should be a string.",
    "mail_settings.footer.html": "The text/html version of your footer should be a string.",
    "mail_settings.sandbox_mode.enable": "The sandbox mode enable param should be a boolean value.",
    "tracking_settings.click_tracking.enable": "The click tracking enable param should be a boolean value.",
    "tracking_settings.click_tracking.enable_text": "The click tracking enable text must be a boolean value.",
    "tracking_settings.open_tracking.enable": "The open tracking enable param should be a boolean value.",
    "tracking_settings.open_tracking.substitution_tag": "The open tracking substitution tag must be a string.",
    "tracking_settings.subscription_tracking.enable": (
        "The subscription tracking enable param should be a boolean value."
    ),
    "tracking_settings.subscription_tracking.text": (
        "The subscription tracking unsubscribe content for text/plain messages must be a string."
    ),
    "tracking_settings.subscription_tracking.html": (
        "The subscription tracking unsubscribe content for text/html messages must be a string."
    ),
    "tracking_settings.subscription_tracking.substitution_tag": (
        "The subscription tracking substitution tag must be a string value."
    ),
    "tracking_settings.ganalytics.enable": "The Google Analytics enable param must be a boolean value.",
    **{
        f"tracking_settings.ganalytics.{utm}": f"The Google Analytics {utm} must be a string value."
        for utm in ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
    },
}  # fmt: skip
EMAIL_LABELS: Final = {"to": "To", "cc": "CC", "bcc": "BCC", "from": "From", "reply_to": "Reply-To"}
MAPS: Final = {
    "headers": (M_HEADER_VALUES_MESSAGE, M_HEADER_VALUES_PERSONALIZATION),
    "custom_args": (M_CUSTOM_ARGS_VALUES, M_CUSTOM_ARGS_VALUES),
    "substitutions": (M_SUBSTITUTIONS_VALUES, M_SUBSTITUTIONS_VALUES),
}
