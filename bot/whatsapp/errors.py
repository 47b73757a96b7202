"""Graph API failures as one exception type carrying Meta's code.

Meta asks clients to branch on ``error.code`` (and ``error_data.details``), never on titles or
on the HTTP status, which its own mirrors disagree about. So every failure, whatever the
status, becomes a :class:`WhatsAppApiError` with the code; failures where no answer came back
become a :class:`WhatsAppTransportError` that says whether the request may have reached Meta.
"""

from __future__ import annotations

#: Short meanings of the codes a drip sender meets, phrased for admin alerts
#: ("failed: 131026 message undeliverable").
ERROR_MEANINGS: dict[int, str] = {
    2: "API service temporarily down",
    4: "application request limit reached",
    100: "invalid parameter",
    190: "access token expired or invalid",
    368: "temporarily blocked for policy violations",
    80007: "WhatsApp Business Account rate limit reached",
    130429: "throughput rate limit hit",
    130472: "recipient is in a Meta marketing experiment",
    131000: "unknown error at Meta",
    131016: "service temporarily unavailable",
    131026: "message undeliverable",
    131047: "24-hour window closed: a template is needed",
    131048: "spam rate limit: too many messages blocked or flagged",
    131049: "not delivered: per-user marketing limit",
    131050: "recipient stopped marketing messages",
    131051: "unsupported message type",
    131052: "media download error",
    131053: "media upload error: link unreachable or wrong MIME type",
    131056: "too many messages to this recipient in a short time",
    131062: "recipient user id not supported",
    131063: "marketing templates disabled on the Cloud API",
    131064: "messaging limit reached after template-classification violations",
    132000: "template parameter count mismatch",
    132001: "template does not exist in that language or is not approved",
    132012: "template parameter format mismatch",
    132015: "template paused for low quality",
    132016: "template permanently disabled",
}


def describe_code(code: int | None) -> str:
    """``131026`` → ``"131026 message undeliverable"``; unknown codes keep just the number."""
    if code is None:
        return "no error code"
    meaning = ERROR_MEANINGS.get(code)
    return f"{code} {meaning}" if meaning else str(code)


class WhatsAppError(Exception):
    """The base of everything this package raises."""


class WhatsAppApiError(WhatsAppError):
    """A request the Graph API refused or answered with something other than success.

    ``in_doubt`` is true when Meta may have acted on the request anyway (a gateway error without
    a Graph body, an unreadable success): resending blindly could deliver the message twice.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None,
        http_status: int,
        details: str | None = None,
        fbtrace_id: str | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.in_doubt = in_doubt

    @property
    def meaning(self) -> str | None:
        return ERROR_MEANINGS.get(self.code) if self.code is not None else None

    def describe(self) -> str:
        """One line for logs and admin alerts, led by the code and its meaning."""
        if self.code is not None:
            head = describe_code(self.code)
        elif self.http_status:
            head = f"HTTP {self.http_status}"
        else:
            head = "no response"
        tail = self.details or self.message
        return f"{head}: {tail}" if tail else head

    def __str__(self) -> str:
        return self.describe()


class WhatsAppTransportError(WhatsAppApiError):
    """No usable answer: connection refused, reset, or timed out.

    ``in_doubt`` is false only when the request certainly never left (nothing connected), so a
    retry is safe; otherwise the message may already be on its way.
    """

    def __init__(self, message: str, *, in_doubt: bool) -> None:
        super().__init__(message, code=None, http_status=0, in_doubt=in_doubt)


class MediaTooLargeError(WhatsAppError):
    """A media file over the caller's size cap; refused before or while downloading."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"media of {size} bytes or more is over the {max_bytes}-byte limit")
        self.size = size
        self.max_bytes = max_bytes
