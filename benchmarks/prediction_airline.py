"""The tau-bench airline domain as a failure-prediction plug-in (``omium.models.prediction.DomainFeatures``).

What the product's predictor shipped before issue 18 and does not any more: the customer's
airline intents (cancel, change, book, baggage, cabin, insurance, passengers, payment,
compensation, constraints such as "cheapest"/"nonstop"), reservation codes, flight numbers and
airports, and tau-bench's simulated-user end marker ``###STOP###``. It lives with the benchmark
that uses it: ``make_predictor(domain=AirlineDomain())``. A deployment with its own business
writes a plug-in like this one for its own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from omium.models.prediction import StepLike, is_customer, is_tool

INTENTS = {
    "cancel": re.compile(r"\bcancel", re.I),
    "change": re.compile(r"\bchang|modif|switch|\bmove\b|adjust|reschedul|rebook|different flight", re.I),
    "book": re.compile(r"\bbook\b|\bbook (a|an|another|the|same)\b|\bbuy\b|purchase|\breserve\b", re.I),
    "baggage": re.compile(r"\bbag|luggage|suitcase", re.I),
    "compensation": re.compile(r"compensat|delay|voucher|miss(ed|ing)? (my|the|an)|inconvenien", re.I),
    "cabin": re.compile(r"upgrad|downgrad|business class|\bcabin|economy", re.I),
    "insurance": re.compile(r"insur", re.I),
    "passenger": re.compile(
        r"passenger|travell?er|\bname\b|"
        r"my (wife|husband|friend|son|daughter|mom|dad|mother|father|partner|kids?|children|family)",
        re.I,
    ),
    "payment": re.compile(
        r"gift card|certificate|credit card|payment|\bpay\b|balance|\bpoints\b|\bfee", re.I
    ),
    "constraint": re.compile(
        r"cheapest|quickest|fastest|shortest|non-?stop|direct|later|earlier|earliest|latest|same day|budget|"
        r"one-way|round[- ]trip|\d ?(am|pm)\b|o'clock",
        re.I,
    ),
}
USER_STOP = re.compile(r"###STOP###")
RESERVATION = re.compile(r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{6}\b")
FLIGHT = re.compile(r"\b[A-Z]{2,3}\d{3,4}\b")
AIRPORT = re.compile(r"\b[A-Z]{3}\b")
USER_ID = re.compile(r"\b[a-z]+_[a-z]+_\d+\b")
MASKS = ((USER_ID, " userid "), (FLIGHT, " flightno "), (RESERVATION, " rescode "), (AIRPORT, " airport "))


class AirlineDomain:
    """Counted signals and masks of tau-bench's airline customer service."""

    name = "airline"
    feature_names: tuple[str, ...] = (
        *(f"intent_{n}" for n in INTENTS),
        *(f"first_intent_{n}" for n in INTENTS),
        "distinct_intents",
        "reservation_codes",
        "flight_numbers",
        "airports",
        "user_stopped",
    )

    def counts(self, prefix: Sequence[StepLike]) -> list[float]:
        """One count per name of ``feature_names`` for the prefix."""
        customer = [s.content for s in prefix if is_customer(s)]
        said = " \n".join(customer)
        everything = " \n".join(s.content for s in prefix if not is_tool(s))
        intents = [len(p.findall(said)) for p in INTENTS.values()]
        return [
            *intents,
            *(int(bool(customer) and bool(p.search(customer[0]))) for p in INTENTS.values()),
            sum(i > 0 for i in intents),
            len(set(RESERVATION.findall(everything))),
            len(set(FLIGHT.findall(everything))),
            len(set(AIRPORT.findall(everything))),
            int(bool(USER_STOP.search(said))),
        ]

    def mask(self, text: str) -> str:
        """Text with customers' ids, flight numbers, reservation codes and airports as placeholders."""
        for pattern, placeholder in MASKS:
            text = pattern.sub(placeholder, text)
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AirlineDomain)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return "AirlineDomain()"
