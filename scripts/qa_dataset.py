#!/usr/bin/env python3
"""Synthetic extractive-QA data about payment disputes, card transactions and orders.

Every example is in SQuAD form::

    {"id": ..., "title": <document kind>, "question": ..., "context": ...,
     "answers": {"text": [...], "answer_start": [...]},
     "qtype": <what is asked>, "heldout_phrasing": bool}

``answers`` lists every place the answer occurs in the context (the same text
each time); an unanswerable question (only when ``unanswerable`` > 0) has empty
lists, as in SQuAD 2.0.

The contexts are short documents -- support tickets, dispute letters, order
confirmations, bank statement excerpts, chat transcripts, refund notices,
chargeback notices -- and, for a share of the examples, long case files of
several paragraphs (about 300-600 words) where the answer may sit anywhere,
including the last paragraph.  Each document mentions several entities of the
same type in different roles (the amount charged and the amount refunded, the
order date and the delivery date, the billing city and the shipping city, the
original and the return tracking number, the customer and the agent ...), so a
model has to read the question to pick the right one.

Everything is deterministic given ``seed``.  Train and test sets share the
templates and are told apart by seed (use different seeds; the example ids
carry the split and seed).  A few question phrasings are *held out* (``HELDOUT_PHRASINGS``):
``split="train"`` never uses them, ``split="test"`` uses every phrasing and flags
the held-out ones (``heldout_phrasing``), and ``split="heldout"`` asks only
held-out phrasings, to measure generalisation to question wordings never seen in
training.

    python scripts/qa_dataset.py --n 2000 --seed 1 --split train --out train.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import sys
from pathlib import Path

# ----------------------------------------------------------------- vocabularies

FIRST_NAMES = [
    "Maria", "James", "Aisha", "Daniel", "Sofia", "Liam", "Chen", "Olivia", "Mateo", "Priya",
    "Noah", "Emma", "Yusuf", "Hannah", "Lucas", "Amara", "Ethan", "Ingrid", "Kenji", "Fatima",
    "Oliver", "Chloe", "Rafael", "Zoe", "Tomasz", "Grace", "Diego", "Leila", "Samuel", "Nadia",
    "Victor", "Elena", "Arjun", "Claire", "Marcus", "Anika", "Pedro", "Julia", "Kwame", "Ruth",
]
LAST_NAMES = [
    "Garcia", "Thompson", "Okafor", "Novak", "Rossi", "Kim", "Schneider", "Patel", "Dubois",
    "Andersson", "Murphy", "Silva", "Kowalski", "Nakamura", "Haddad", "Jensen", "Moreau",
    "O'Brien", "Fischer", "Lopez", "Walsh", "Ivanova", "Mensah", "Bennett", "Costa", "Larsen",
    "Reyes", "Hoffman", "Singh", "Bauer", "Clarke", "Varga", "Yilmaz", "Fernandes", "Brooks",
    "Ahmed", "Lindqvist", "Romero", "Sato", "McAllister",
]
MERCHANTS = [
    "Northwind Electronics", "BlueHarbor Outfitters", "Cedar & Vine Home", "PixelPeak Games",
    "Lumen Optics", "Urban Trail Sports", "Maple Leaf Books", "Brightside Pharmacy",
    "Coastal Coffee Roasters", "Orbit Mobile", "Helix Fitness", "Golden Crust Bakery",
    "Summit Gear Co.", "Velvet Petal Florists", "TechNest", "Riverbend Furniture",
    "SilverLine Travel", "Evergreen Grocers", "Nimbus Cloud Storage", "Atlas Auto Parts",
    "Harborview Hotels", "Quill & Ink Stationery", "Sparrow Kids", "StreamBox Media",
    "FreshFold Laundry", "Copperfield Kitchens", "Polar Bear Appliances", "Redwood Pet Supply",
    "Starlight Cinemas", "Kestrel Audio", "Meridian Watches", "Oakridge Garden Center",
    "Zephyr Bikes", "Crimson Fashion House", "Tidewater Marine", "Lighthouse Toys",
]
STORE_SUFFIX = ["", "", " Online", " Store", " Ltd", " Inc."]
BANKS = [
    "First Meridian Bank", "Crescent Federal Credit Union", "Northgate Savings Bank",
    "Harbor Trust Bank", "Unity Community Bank", "Pinecrest Financial", "Alder National Bank",
    "Bluewater Bank", "Keystone Credit Union", "Silverstone Bank",
]
CARRIERS = ["UPS", "FedEx", "DHL Express", "USPS", "Royal Mail", "DPD", "GLS", "PostNL",
            "Canada Post", "Evri"]
CARD_BRANDS = ["Visa", "Mastercard", "American Express", "Discover", "Visa debit card",
               "Mastercard credit card"]
CITIES = [
    "Portland", "San Antonio", "Lyon", "Rotterdam", "Leeds", "Kraków", "Austin", "Denver",
    "Toronto", "Melbourne", "Dublin", "Hamburg", "Seville", "Porto", "Gothenburg", "Chicago",
    "Salt Lake City", "New Orleans", "Vancouver", "Manchester", "Bologna", "Antwerp",
    "Edinburgh", "Phoenix", "Minneapolis", "Nashville", "Brisbane", "Wellington", "Calgary",
    "Marseille", "Leipzig", "Valencia", "Cork", "Bristol", "Pittsburgh", "Sacramento",
    "Raleigh", "Tampa", "Baltimore", "Columbus", "Ottawa", "Glasgow", "Utrecht", "Zurich",
    "Vienna", "Prague", "Tallinn", "Aarhus", "Bergen", "Malmö", "San Diego", "Boise",
    "Kansas City", "Buffalo", "Halifax", "Auckland", "Adelaide", "Cardiff", "Belfast", "Ghent",
]
STREETS = ["Oak Street", "Maple Avenue", "Harbour Road", "King Street", "Elm Drive",
           "Station Road", "Lakeview Terrace", "Market Street", "Birch Lane", "Mill Road",
           "Church Street", "Park Avenue", "Cedar Court", "Hillside Way", "Bridge Street"]
PRODUCTS = [
    "noise-cancelling headphones", "espresso machine", "27-inch 4K monitor",
    "trail running shoes", "standing desk", "robot vacuum", "mechanical keyboard",
    "winter parka", "air fryer", "smartwatch", "yoga mat", "carry-on suitcase",
    "gaming console", "cordless drill", "wool blanket", "bluetooth speaker", "office chair",
    "electric toothbrush", "camping tent", "blender", "e-reader", "leather wallet",
    "digital camera", "baby stroller", "road bike helmet", "cast iron skillet", "desk lamp",
    "wireless router", "kids' bicycle", "set of kitchen knives", "portable charger",
    "annual software subscription", "hotel booking", "concert ticket", "phone case",
]
REASONS = [
    "merchandise not received", "duplicate charge", "item not as described",
    "unauthorized transaction", "cancelled subscription", "defective merchandise",
    "credit not processed", "incorrect amount charged", "goods returned",
]
AGENT_TITLES = ["", "", "Customer Care", "Disputes Team", "Billing Support"]
OTHER_SHOPS = ["SHELL OIL 5521", "SPOTIFY P1C3", "WHOLEFDS MKT", "AMZN MKTP", "UBER TRIP",
               "STARBUCKS 0431", "NETFLIX.COM", "TARGET T-1187", "CITY PARKING", "APPLE.COM/BILL",
               "DELTA AIR", "IKEA", "LIDL", "TESCO STORES", "BOLT.EU"]

# ---------------------------------------------------------- question phrasings
#
# role -> phrasings (some held out of training: HELDOUT_PHRASINGS below).
# Phrasings may mention other facts of the case, e.g. {merchant}.

QUESTIONS: dict[str, list[str]] = {
    "charged_amount": [
        "How much was the customer charged?", "What amount was charged?",
        "What was the charge amount?", "How much did the customer pay?",
        "What was the total amount charged?", "How much was taken from the card?",
        "What was the total charge?", "How much was the card charged?",
        "What was the customer billed?",
    ],
    "refund_amount": [
        "How much was refunded?", "What was the refund amount?",
        "How much money was returned to the customer?", "What amount did the merchant refund?",
        "How much did the customer get back?", "What is the amount of the refund?",
        "How much was credited back?",
    ],
    "shipping_fee": [
        "How much was the shipping fee?", "What did shipping cost?",
        "What was the delivery charge?", "How much was charged for shipping?",
        "How much was paid for postage?",
    ],
    "order_date": [
        "When was the order placed?", "What is the order date?",
        "On what date was the purchase made?", "When did the customer place the order?",
        "What day was the order made?", "When was the item ordered?",
    ],
    "delivery_date": [
        "When was the package delivered?", "What was the delivery date?",
        "On what date did the parcel arrive?", "When did the order arrive?",
        "When did the shipment reach the customer?",
    ],
    "charge_date": [
        "When was the card charged?", "What is the transaction date?",
        "On what date was the charge posted?", "When did the charge go through?",
        "On which day was the payment taken?",
    ],
    "refund_date": [
        "When was the refund issued?", "On what date was the refund processed?",
        "When was the money refunded?", "What is the refund date?",
        "When did the refund go out?",
    ],
    "dispute_date": [
        "When was the dispute filed?", "On what date did the customer open the dispute?",
        "When was the chargeback opened?", "What date was the claim submitted?",
    ],
    "respond_by": [
        "By when must the merchant respond?", "What is the response deadline?",
        "What is the deadline for the merchant's reply?",
        "By what date does the merchant have to answer?",
    ],
    "billing_city": [
        "What is the billing city?", "Which city is on the billing address?",
        "In which city is the billing address?", "Where is the card billed to?",
        "What city does the customer get billed in?",
    ],
    "shipping_city": [
        "Where was the order shipped?", "What is the shipping city?",
        "To which city was the package sent?", "Which city is the delivery address in?",
        "What city was the order sent to?",
    ],
    "order_id": [
        "What is the order number?", "What is the order ID?", "Which order is this about?",
        "What is the order reference?", "What order number was given?",
        "Which order number does the customer mention?",
    ],
    "case_id": [
        "What is the case number?", "What is the case ID?",
        "What reference number was assigned to the case?", "What is the case reference?",
        "What is the dispute reference?",
    ],
    "card_last4": [
        "What are the last four digits of the card?", "What are the last 4 digits of the card used?",
        "Which card ending was charged?", "What card number ending was used for the purchase?",
        "What does the card number end in?",
    ],
    "replacement_card_last4": [
        "What are the last four digits of the replacement card?",
        "What does the new card end in?", "What are the last 4 digits of the new card?",
        "Which digits does the replacement card end with?",
    ],
    "tracking_number": [
        "What is the tracking number?", "What is the tracking ID for the shipment?",
        "Which tracking number was provided?", "What is the tracking code of the package?",
        "What number can the parcel be tracked with?",
    ],
    "return_tracking": [
        "What is the tracking number of the return?", "What is the return tracking number?",
        "Which tracking number belongs to the returned package?",
        "What tracking code was used to send the item back?",
    ],
    "customer_name": [
        "What is the customer's name?", "Who is the customer?", "Who filed the complaint?",
        "Who is the cardholder?", "Who placed the order?",
        "What is the name of the account holder?",
    ],
    "agent_name": [
        "Who is the support agent?", "Which agent handled the case?",
        "What is the name of the representative?", "Who responded on behalf of support?",
        "Which employee dealt with the request?",
    ],
    "recipient_name": [
        "Who was the package addressed to?", "Who is the recipient of the shipment?",
        "To whom was the order shipped?", "Who was the parcel meant for?",
    ],
    "merchant": [
        "Which merchant is involved?", "What is the name of the store?", "Who is the seller?",
        "Which company sold the item?", "Which merchant charged the card?",
        "What shop was the purchase made from?",
    ],
    "carrier": [
        "Which carrier delivered the package?", "What shipping company was used?",
        "Which courier handled the shipment?", "Who shipped the parcel?",
    ],
    "product": [
        "What item was ordered?", "What did the customer buy?",
        "Which product is the dispute about?", "What was purchased?",
        "What product did the customer order?",
    ],
    "bank": [
        "Which bank issued the card?", "What is the name of the card issuer?",
        "Which bank is the dispute filed with?", "Who is the issuing bank?",
    ],
    "reason": [
        "What is the reason for the dispute?", "Why did the customer dispute the charge?",
        "What reason was given for the chargeback?", "On what grounds was the charge disputed?",
    ],
}

# In a bank statement there are many charges, so these questions must name the merchant.
MERCHANT_QUESTIONS: dict[str, list[str]] = {
    "charged_amount": [
        "How much did {merchant} charge?", "What amount did {merchant} charge the card?",
        "How much was spent at {merchant}?", "What was the charge from {merchant}?",
        "How much was paid to {merchant}?",
    ],
    "refund_amount": [
        "How much did {merchant} refund?", "What was the refund from {merchant}?",
        "How much was credited by {merchant}?",
    ],
    "charge_date": [
        "When did {merchant} charge the card?", "On what date was the {merchant} charge posted?",
        "What is the date of the {merchant} transaction?",
        "When was the payment to {merchant} made?",
    ],
    "refund_date": [
        "When did {merchant} issue the refund?", "On what date was the {merchant} refund posted?",
        "When did the refund from {merchant} arrive?",
    ],
}

# An unanswerable question must not have a near-synonym answer in the context.
CONFUSABLE = {
    "tracking_number": {"return_tracking"}, "return_tracking": {"tracking_number"},
    "card_last4": {"replacement_card_last4"}, "replacement_card_last4": {"card_last4"},
    "customer_name": {"recipient_name"}, "recipient_name": {"customer_name"},
    "charge_date": {"order_date"}, "order_date": {"charge_date"},
    "charged_amount": {"refund_amount"}, "dispute_date": {"respond_by"},
}

# Never used for training; split="heldout" asks only these.
HELDOUT_PHRASINGS = frozenset([
    "What was the customer billed?",                  # charged_amount
    "How much was credited back?",                    # refund_amount
    "When was the item ordered?",                     # order_date
    "What city was the order sent to?",               # shipping_city
    "What number can the parcel be tracked with?",    # tracking_number
    "Which employee dealt with the request?",         # agent_name
])
ROLES = tuple(QUESTIONS)
HELDOUT_ROLES = frozenset(r for r, qs in QUESTIONS.items() if HELDOUT_PHRASINGS & set(qs))
assert all(any(h in qs for qs in QUESTIONS.values()) for h in HELDOUT_PHRASINGS)

# Roles present in few documents are asked about more often when they are present.
ROLE_WEIGHT = {
    "agent_name": 2.0, "recipient_name": 3.0, "replacement_card_last4": 3.0, "respond_by": 2.0,
    "return_tracking": 2.0, "dispute_date": 2.0, "carrier": 1.5, "delivery_date": 1.5,
    "card_last4": 0.7, "customer_name": 0.8,
}

# ------------------------------------------------------------------ formatting


def fmt_money(value: float, style: str) -> str:
    s = f"{value:,.2f}"
    return {
        "usd_sign": f"${s}", "usd_code": f"USD {s}", "eur_code": f"EUR {s}",
        "eur_sign": f"€{s}", "eur_suffix": f"{s} EUR", "gbp_sign": f"£{s}", "gbp_code": f"GBP {s}",
        "cad_code": f"CAD {s}", "aud_sign": f"A${s}",
    }[style]


MONEY_STYLES = ["usd_sign", "usd_sign", "usd_sign", "usd_code", "eur_code", "eur_sign",
                "eur_suffix", "gbp_sign", "gbp_code", "cad_code", "aud_sign"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fmt_date(d: dt.date, style: str) -> str:
    month, mon = d.strftime("%B"), d.strftime("%b")
    return {
        "long_us": f"{month} {d.day}, {d.year}",
        "short_us": f"{mon} {d.day}, {d.year}",
        "long_eu": f"{d.day} {month} {d.year}",
        "short_eu": f"{d.day} {mon} {d.year}",
        "iso": d.isoformat(),
        "slash_us": f"{d.month:02d}/{d.day:02d}/{d.year}",
        "dot_eu": f"{d.day:02d}.{d.month:02d}.{d.year}",
        "ordinal": f"{ordinal(d.day)} {month} {d.year}",
        "weekday": f"{d.strftime('%A')}, {month} {d.day}, {d.year}",
    }[style]


DATE_STYLES = ["long_us", "long_us", "short_us", "long_eu", "short_eu", "iso", "slash_us",
               "dot_eu", "ordinal", "weekday"]

_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_UPPER) for _ in range(n))


def make_order_id(rng: random.Random, style: str) -> str:
    if style == "ord":
        return f"ORD-{_digits(rng, 5)}-{_letters(rng, 2)}"
    if style == "so":
        return f"SO-{rng.randint(2021, 2025)}-{_digits(rng, 6)}"
    if style == "num":
        return str(rng.randint(10 ** 7, 10 ** 9 - 1))
    return f"{_letters(rng, 3)}-{_digits(rng, 6)}"


def make_case_id(rng: random.Random) -> str:
    return rng.choice([
        lambda: f"CASE-{_digits(rng, 8)}", lambda: f"DSP-{_digits(rng, 6)}",
        lambda: f"CB-{rng.randint(2021, 2025)}-{_digits(rng, 4)}",
        lambda: f"TCK-{_digits(rng, 6)}",
    ])()


def make_tracking(rng: random.Random, carrier: str) -> str:
    if carrier == "UPS":
        return "1Z" + "".join(rng.choice(_ALNUM) for _ in range(6)) + _digits(rng, 6)
    if carrier == "FedEx":
        return _digits(rng, 12)
    if carrier == "USPS":
        return "9400 " + " ".join(_digits(rng, 4) for _ in range(3))
    if carrier in ("DHL Express", "GLS", "DPD"):
        return _digits(rng, 10)
    if carrier in ("Royal Mail", "Canada Post", "PostNL", "Evri"):
        return f"{_letters(rng, 2)}{_digits(rng, 9)}{rng.choice(['GB', 'CA', 'NL'])}"
    return f"TRK{_digits(rng, 9)}"


def make_last4(rng: random.Random, avoid: set) -> str:
    while True:
        v = f"{rng.randint(1000, 9999)}"
        if not v.startswith(("19", "20")) and v not in avoid:
            return v


def make_money(rng: random.Random, lo: float, hi: float) -> float:
    v = rng.uniform(lo, hi)
    return round(v if v < 100 else round(v, 0) - rng.choice([0.01, 0.0, 0.05, 0.5]), 2)


# ------------------------------------------------------------------- the case


def sample_case(rng: random.Random) -> dict:
    """All facts of one case, already formatted as they appear in text."""
    f: dict[str, str] = {}
    cust_first, agent_first, rec_first = rng.sample(FIRST_NAMES, 3)
    cust_last, agent_last, rec_last = rng.sample(LAST_NAMES, 3)
    f["customer_name"] = f"{cust_first} {cust_last}"
    f["customer_first"] = cust_first
    f["agent_name"] = rng.choice([f"{agent_first} {agent_last}", f"{agent_first} {agent_last}",
                                  f"{agent_first} {agent_last[0]}."])
    f["recipient_name"] = f"{rec_first} {rng.choice([rec_last, cust_last])}"
    merchant, other_merchant = rng.sample(MERCHANTS, 2)
    f["merchant"] = merchant + rng.choice(STORE_SUFFIX)
    f["x_other_merchant"] = other_merchant
    f["merchant_caps"] = merchant.upper().replace("&", "AND").replace(".", "")[:18].strip()
    f["bank"] = rng.choice(BANKS)
    carrier = rng.choice(CARRIERS)
    f["carrier"] = carrier
    f["tracking_number"] = make_tracking(rng, carrier)
    while True:
        f["return_tracking"] = make_tracking(rng, rng.choice(CARRIERS))
        if f["return_tracking"] != f["tracking_number"]:
            break
    f["card_brand"] = rng.choice(CARD_BRANDS)
    f["card_last4"] = make_last4(rng, set())
    f["replacement_card_last4"] = make_last4(rng, {f["card_last4"]})
    f["x_other_last4"] = make_last4(rng, {f["card_last4"], f["replacement_card_last4"]})
    billing, shipping, other_city = rng.sample(CITIES, 3)
    f["billing_city"], f["shipping_city"], f["x_merchant_city"] = billing, shipping, other_city
    f["billing_street"] = f"{rng.randint(2, 2999)} {rng.choice(STREETS)}"
    f["shipping_street"] = f"{rng.randint(2, 2999)} {rng.choice(STREETS)}"
    f["product"] = rng.choice(PRODUCTS)
    f["a"] = "an" if f["product"][0] in "aeiou" else "a"
    f["x_other_product"] = rng.choice([p for p in PRODUCTS if p != f["product"]])
    f["a_other"] = "an" if f["x_other_product"][0] in "aeiou" else "a"
    f["reason"] = rng.choice(REASONS)
    ostyle = rng.choice(["ord", "ord", "ord", "so", "num", "abc"])
    f["order_id"] = make_order_id(rng, ostyle)
    f["x_prev_order"] = make_order_id(rng, ostyle)
    f["case_id"] = make_case_id(rng)

    # amounts: charged = item + shipping; the refund covers part of it
    mstyle = rng.choice(MONEY_STYLES)
    item = make_money(rng, 8, 2400)
    ship = rng.choice([4.99, 5.95, 7.50, 9.99, 12.00, 14.95, 19.99, 24.50, 29.00, 39.99])
    charged = round(item + ship, 2)
    refund = rng.choice([item, round(item * rng.choice([0.5, 0.25, 0.3, 0.8]), 2),
                         round(item - rng.choice([10, 15, 20, 5]), 2) if item > 40 else item])
    other = make_money(rng, 5, 900)
    while other in (item, charged, refund, ship):
        other += 1.0
    f["charged_amount"] = fmt_money(charged, mstyle)
    f["item_price"] = fmt_money(item, mstyle)
    f["refund_amount"] = fmt_money(refund, mstyle)
    f["shipping_fee"] = fmt_money(ship, mstyle)
    f["x_other_amount"] = fmt_money(other, mstyle)

    # dates in story order, all distinct
    dstyle = rng.choice(DATE_STYLES)
    start = dt.date(2022, 1, 1) + dt.timedelta(days=rng.randint(0, 1200))
    d_order = start
    d_charge = d_order + dt.timedelta(days=rng.randint(1, 3))
    d_deliver = d_charge + dt.timedelta(days=rng.randint(2, 12))
    d_dispute = d_deliver + dt.timedelta(days=rng.randint(3, 30))
    d_refund = d_dispute + dt.timedelta(days=rng.randint(2, 20))
    d_respond = d_dispute + dt.timedelta(days=rng.choice([10, 14, 20, 30, 45]))
    if d_respond == d_refund:
        d_respond += dt.timedelta(days=1)
    d_other = d_order - dt.timedelta(days=rng.randint(3, 60))
    for key, d in [("order_date", d_order), ("charge_date", d_charge),
                   ("delivery_date", d_deliver), ("dispute_date", d_dispute),
                   ("refund_date", d_refund), ("respond_by", d_respond), ("x_other_date", d_other)]:
        style = dstyle if rng.random() < 0.85 else rng.choice(DATE_STYLES)
        f[key] = fmt_date(d, style)
    # statement rows: other transactions around the charge, in the charge's date style
    f["stmt_style"] = rng.choice(["slash_us", "dot_eu", "iso", "short_us", "short_eu"])
    taken = {d_charge, d_refund, d_order, d_deliver, d_dispute, d_respond, d_other}
    f["stmt_other_dates"] = [d_charge + dt.timedelta(days=k)
                             for k in rng.sample(range(-12, 30), 8)
                             if d_charge + dt.timedelta(days=k) not in taken][:4]
    f["stmt_charge"], f["stmt_refund"] = d_charge, d_refund
    f["money_style"] = mstyle
    return f


# -------------------------------------------------------------------- builder

_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


class Doc:
    """Accumulates text and remembers where each fact was written."""

    def __init__(self, facts: dict):
        self.facts = facts
        self.parts: list[str] = []
        self.length = 0
        self.spans: dict[str, list[int]] = {}
        self.blocked: set[str] = set()  # roles present but not to be asked about

    def add(self, template: str) -> "Doc":
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            self._raw(template[pos:m.start()])
            key = m.group(1)
            value = self.facts[key]
            self.spans.setdefault(key, []).append(self.length)
            self._raw(value)
            pos = m.end()
        self._raw(template[pos:])
        return self

    def _raw(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def text(self) -> str:
        return "".join(self.parts)


def pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


def sentences(doc: Doc, rng: random.Random, items: list[str], shuffle: bool = True,
              sep: str = " ") -> None:
    items = list(items)
    if shuffle:
        rng.shuffle(items)
    for i, s in enumerate(items):
        doc.add(s if i == 0 else sep + s)


# ------------------------------------------------- sentence pools per fact


def s_order(rng):
    return pick(rng,
                "I placed order {order_id} on {order_date}.",
                "On {order_date} I ordered {a} {product} from {merchant} (order {order_id}).",
                "Order {order_id} was placed on {order_date}.",
                "The order ({order_id}) was made on {order_date} for {a} {product}.",
                "I bought {a} {product} from {merchant} on {order_date}, order number {order_id}.")


def s_charge(rng):
    return pick(rng,
                "My {card_brand} ending in {card_last4} was charged {charged_amount} on {charge_date}.",
                "On {charge_date} a charge of {charged_amount} appeared on my card ending {card_last4}.",
                "{merchant} charged {charged_amount} to the card ending in {card_last4} on {charge_date}.",
                "The total of {charged_amount} was debited from my {card_brand} (last four digits {card_last4}) on {charge_date}.",
                "I was billed {charged_amount}, which posted on {charge_date} to my card ending {card_last4}.")


def s_delivery(rng):
    return pick(rng,
                "The package was delivered on {delivery_date} by {carrier} (tracking {tracking_number}).",
                "{carrier} marked it as delivered on {delivery_date}; the tracking number is {tracking_number}.",
                "According to {carrier}, tracking number {tracking_number}, the parcel arrived on {delivery_date}.",
                "It shipped with {carrier} under tracking number {tracking_number} and was delivered {delivery_date}.")


def s_refund(rng):
    return pick(rng,
                "Only {refund_amount} was refunded, on {refund_date}.",
                "A partial refund of {refund_amount} was issued on {refund_date}.",
                "On {refund_date} {merchant} refunded {refund_amount}.",
                "The refund of {refund_amount} posted on {refund_date}.",
                "I received {refund_amount} back on {refund_date}, not the full amount.")


def s_cities(rng):
    return pick(rng,
                "My billing address is in {billing_city}, but the order was shipped to {shipping_city}.",
                "The card is billed to {billing_street}, {billing_city}; the item was sent to {shipping_street}, {shipping_city}.",
                "It was shipped to my office in {shipping_city}, while my billing address is in {billing_city}.",
                "Billing city: {billing_city}. Shipping city: {shipping_city}.",
                "I live in {billing_city} and had the parcel delivered to {shipping_city}.")


def s_shipping_fee(rng):
    return pick(rng,
                "That total includes {shipping_fee} for shipping.",
                "The price was {item_price} plus a {shipping_fee} shipping fee.",
                "Shipping cost {shipping_fee} on top of the {item_price} item price.")


def s_return(rng):
    return pick(rng,
                "I sent the item back on {dispute_date} with return tracking number {return_tracking}.",
                "The return was shipped with tracking {return_tracking}.",
                "I returned it using the prepaid label, tracking number {return_tracking}.")


def s_distractor(rng):
    return pick(rng,
                "This is not about my earlier order {x_prev_order}, which was fine.",
                "I also have a separate charge of {x_other_amount} from {x_other_merchant} that is correct.",
                "My previous order, {x_prev_order}, arrived without problems on {x_other_date}.",
                "Please do not confuse this with the {x_other_amount} I spent at {x_other_merchant}.",
                "Note that my other card, ending {x_other_last4}, was not involved.")


# ------------------------------------------------------------ short documents


def doc_support_ticket(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "Support ticket {case_id}\n", "Ticket: {case_id}\n", "Case {case_id} | Priority: normal\n"))
    d.add(pick(rng, "Customer: {customer_name}\n", "From: {customer_name}\n", "Requester: {customer_name}\n"))
    d.add(pick(rng, "Assigned to: {agent_name}\n", "Agent: {agent_name}\n", "Owner: {agent_name} (Billing Support)\n"))
    d.add(pick(rng, "Subject: ", "Summary: ") + pick(
        rng, "Charged more than expected for order {order_id}\n\n", "Refund incomplete\n\n",
        "Wrong amount charged\n\n", "Problem with my order\n\n"))
    body = [s_order(rng), s_charge(rng), s_refund(rng)]
    body += rng.sample([s_delivery(rng), s_cities(rng), s_shipping_fee(rng), s_distractor(rng),
                        s_return(rng)], k=rng.randint(1, 3))
    rest = body[1:]
    rng.shuffle(rest)
    sentences(d, rng, body[:1] + rest, shuffle=False)
    d.add("\n\n" + pick(rng, "Internal note: ", "Agent note: ") + pick(
        rng, "Customer verified. Escalated to disputes.", "Awaiting merchant response.",
        "Checked payment logs; amounts confirmed.", "Refund difference under review."))
    return d


def doc_dispute_letter(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "To: {bank} Disputes Department\n", "Dear {bank},\n\n", "{bank}\nCard Disputes\n\n"))
    d.add(pick(rng, "Re: dispute of a charge from {merchant}\n\n", "RE: Card ending {card_last4}\n\n", ""))
    d.add(pick(rng, "I am writing to dispute a charge from {merchant}. ",
               "I would like to dispute a transaction with {merchant}. ",
               "Please open a dispute for the following charge. "))
    body = [s_charge(rng), s_order(rng)]
    body += rng.sample([s_delivery(rng), s_refund(rng), s_cities(rng), s_distractor(rng),
                        "The reason for my dispute is {reason}.",
                        "I contacted the merchant on {dispute_date} and got no answer."],
                       k=rng.randint(2, 4))
    sentences(d, rng, body)
    d.add("\n\n" + pick(rng, "Sincerely,\n{customer_name}\n", "Kind regards,\n{customer_name}\n",
                        "Thank you,\n{customer_name}\n"))
    d.add(pick(rng, "{billing_street}, {billing_city}", "{billing_city}", ""))
    return d


def doc_order_confirmation(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "{merchant}\nOrder confirmation\n\n", "Thanks for your order from {merchant}!\n\n",
               "{merchant} - Your receipt\n\n"))
    d.add(pick(rng, "Hi {customer_name},\n", "Dear {customer_name},\n", "Hello {customer_first},\n"))
    d.add(pick(rng, "we received your order {order_id} on {order_date}.\n\n",
               "your order {order_id}, placed {order_date}, is confirmed.\n\n",
               "thank you for shopping with us. Order number: {order_id} (placed {order_date}).\n\n"))
    d.add("Item: {product} ... {item_price}\n")
    d.add("Shipping: {shipping_fee}\n")
    d.add(pick(rng, "Total charged: {charged_amount}\n", "Order total: {charged_amount}\n",
               "Amount charged to card: {charged_amount}\n"))
    d.add(pick(rng, "Paid with: {card_brand} ending {card_last4}\n",
               "Payment: {card_brand} **** {card_last4}\n",
               "Card: xxxx-xxxx-xxxx-{card_last4}\n"))
    d.add("\n" + pick(rng, "Billing address: {customer_name}, {billing_street}, {billing_city}\n",
                      "Bill to: {billing_street}, {billing_city}\n"))
    d.add(pick(rng, "Shipping address: {recipient_name}, {shipping_street}, {shipping_city}\n",
               "Ship to: {recipient_name}, {shipping_street}, {shipping_city}\n"))
    if rng.random() < 0.7:
        d.add("\n" + pick(rng, "Your order will ship with {carrier}. Tracking number: {tracking_number}.",
                          "Shipped via {carrier}, tracking {tracking_number}. Delivered on {delivery_date}.",
                          "Carrier: {carrier}\nTracking: {tracking_number}\nDelivered: {delivery_date}"))
    if rng.random() < 0.4:
        d.add("\n" + pick(rng, "A credit of {refund_amount} was applied on {refund_date}.",
                          "Update: refund of {refund_amount} issued {refund_date}."))
    return d


def doc_bank_statement(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "{bank} - Statement excerpt\n", "{bank}\nAccount activity\n"))
    d.add(pick(rng, "Account holder: {customer_name}\n", "Cardholder: {customer_name}\n"))
    d.add(pick(rng, "Card: {card_brand} ending {card_last4}\n", "Card number: **** **** **** {card_last4}\n"))
    d.add("\nDate   Description   Amount\n")
    # the statement prints every date in one style: re-render the case's dates in it
    style = f["stmt_style"]
    d.facts = dict(f, charge_date=fmt_date(f["stmt_charge"], style),
                   refund_date=fmt_date(f["stmt_refund"], style))
    rows = []
    others = f["stmt_other_dates"]
    for day, shop in zip(others, rng.sample(OTHER_SHOPS, len(others))):
        amt = fmt_money(round(rng.uniform(3, 400), 2), f["money_style"])
        rows.append((day, f"{fmt_date(day, style)}   {shop}   -{amt}\n"))
    rows.append((f["stmt_charge"], "{charge_date}   {merchant}   -{charged_amount}\n"))
    if rng.random() < 0.8:
        rows.append((f["stmt_refund"], "{refund_date}   REFUND {merchant}   +{refund_amount}\n"))
    rows.sort(key=lambda r: r[0])
    for _, row in rows:
        d.add(row)
    d.blocked.add("merchant")  # several merchants are listed: "which merchant?" is ambiguous
    if rng.random() < 0.5:
        d.add("\n" + pick(rng, "Disputed item: {merchant} charge, case {case_id} opened {dispute_date}.",
                          "Note: the {merchant} transaction is under dispute (case {case_id})."))
    return d


def doc_chat(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    h, m = rng.randint(8, 19), rng.randint(0, 50)

    def t():
        nonlocal m
        m += rng.randint(0, 2)
        return f"[{h:02d}:{m:02d}]"

    d.add(pick(rng, "Chat transcript - {merchant} support\n", "Live chat with {merchant}\n", ""))
    d.add(f"{t()} {{agent_name}}: " + pick(rng, "Hi, thanks for contacting {merchant}. How can I help?\n",
                                             "Hello! You're chatting with {agent_name}. What can I do for you?\n"))
    d.add(f"{t()} {{customer_name}}: " + pick(
        rng, "I was charged {charged_amount} for order {order_id} but only got {refund_amount} back.\n",
        "Hi, my order {order_id} was charged {charged_amount} and I want a refund.\n",
        "Hello, I have a problem with order {order_id}. The charge was {charged_amount}.\n"))
    d.add(f"{t()} {{agent_name}}: " + pick(rng, "I'm sorry to hear that. Can you confirm the last four digits of the card?\n",
                                             "Let me check. Which card did you use?\n"))
    d.add(f"{t()} {{customer_name}}: " + pick(rng, "It ends in {card_last4}.\n", "{card_brand}, ending {card_last4}.\n",
                                               "The one ending {card_last4}, not my other card ending {x_other_last4}.\n"))
    extra = [
        "{agent_name}: I see the order was placed on {order_date} and delivered on {delivery_date}.\n",
        "{agent_name}: The order went to {shipping_city}, and the billing address is in {billing_city}, correct?\n",
        "{agent_name}: I've issued a refund of {refund_amount}; it was processed on {refund_date}.\n",
        "{customer_name}: The tracking number {tracking_number} shows it was left with a neighbour.\n",
        "{agent_name}: The return label has tracking number {return_tracking}.\n",
        "{customer_name}: I also paid {x_other_amount} for {a_other} {x_other_product}, that one is fine.\n",
    ]
    for line in rng.sample(extra, k=rng.randint(2, 4)):
        d.add(f"{t()} " + line)
    d.add(f"{t()} {{agent_name}}: " + pick(rng, "Is there anything else I can help with?", "Thanks for your patience!",
                                             "Your case number is {case_id}."))
    return d


def doc_refund_notice(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "Refund confirmation\n\n", "{merchant}: your refund is on its way\n\n", "Subject: Refund for order {order_id}\n\n"))
    d.add(pick(rng, "Dear {customer_name},\n\n", "Hi {customer_first},\n\n"))
    body = [
        pick(rng, "We have issued a refund of {refund_amount} for order {order_id}.",
             "A refund of {refund_amount} for your order {order_id} was processed on {refund_date}."),
        pick(rng, "Your original payment of {charged_amount} was made on {charge_date}.",
             "The original charge was {charged_amount}."),
        pick(rng, "The money goes back to your {card_brand} ending in {card_last4}.",
             "It will be credited to the card ending {card_last4} within 5-10 business days."),
    ]
    body += rng.sample([
        "We received your return (tracking {return_tracking}) on {refund_date}.",
        "The {shipping_fee} shipping fee is not refundable.",
        "Your order was delivered on {delivery_date} to {shipping_city}.",
        "Because your card was replaced, the credit will appear on the new card ending {replacement_card_last4}.",
    ], k=rng.randint(1, 3))
    sentences(d, rng, body)
    d.add("\n\n" + pick(rng, "Best,\n{agent_name}\n{merchant} Customer Care",
                        "Regards,\n{agent_name}, Returns Team", "The {merchant} team"))
    return d


def doc_chargeback_notice(rng: random.Random, f: dict) -> Doc:
    d = Doc(f)
    d.add(pick(rng, "CHARGEBACK NOTIFICATION\n", "Notice of dispute\n", "Dispute alert for {merchant}\n"))
    d.add("Case number: {case_id}\n")
    d.add(pick(rng, "Issuer: {bank}\n", "Issuing bank: {bank}\n"))
    d.add("Merchant: {merchant}\n")
    d.add(pick(rng, "Cardholder: {customer_name}\n", "Cardholder name: {customer_name}\n"))
    d.add(pick(rng, "Card: ************{card_last4}\n", "Card ending: {card_last4}\n"))
    d.add(pick(rng, "Disputed amount: {charged_amount}\n", "Transaction amount: {charged_amount}\n"))
    d.add(pick(rng, "Transaction date: {charge_date}\n", "Posted: {charge_date}\n"))
    d.add(pick(rng, "Dispute opened: {dispute_date}\n", "Filed: {dispute_date}\n"))
    d.add(pick(rng, "Reason: {reason}\n", "Reason code 13.1 - {reason}\n"))
    d.add(pick(rng, "Respond by: {respond_by}\n", "Response due: {respond_by}\n"))
    d.add("\n" + pick(
        rng,
        "The cardholder states that order {order_id} was not received at the shipping address in {shipping_city}.",
        "Please provide proof of delivery for order {order_id}. A refund of {refund_amount} was already issued on {refund_date}.",
        "The merchant's records show order {order_id} shipped with {carrier}, tracking {tracking_number}.",
        "If you accept the chargeback, no action is needed. A credit of {refund_amount} already applied will be taken into account."))
    return d


SHORT_DOCS = {
    "support_ticket": doc_support_ticket,
    "dispute_letter": doc_dispute_letter,
    "order_confirmation": doc_order_confirmation,
    "bank_statement": doc_bank_statement,
    "chat_transcript": doc_chat,
    "refund_notice": doc_refund_notice,
    "chargeback_notice": doc_chargeback_notice,
}

# ---------------------------------------------------------- long case files

FILLER = [
    "Under our dispute policy, a cardholder may contest a transaction within 120 days of the "
    "posting date. The issuing bank reviews the evidence supplied by both parties and may "
    "grant a provisional credit while the investigation is open. Provisional credits can be "
    "reversed if the merchant proves that the charge was valid.",
    "Refunds are normally returned to the original payment method. Depending on the bank, "
    "it can take between five and ten business days for a credit to appear on a statement. "
    "Refunds under $25.00 are processed automatically and do not need approval from a supervisor.",
    "Merchants are asked to keep proof of delivery, such as a signature or a photo taken by the "
    "courier, for at least 18 months. Tracking information alone is often not enough to win a "
    "chargeback when the cardholder says the item never arrived.",
    "Customers should keep the original packaging for returns. Items returned without packaging "
    "may be subject to a restocking fee of up to 15 percent. Gift cards, perishable goods and "
    "personalised items cannot be returned once they have been shipped.",
    "All calls with our support team may be recorded for quality and training purposes. Agents "
    "cannot see full card numbers; they only see the last four digits, the card brand and the "
    "expiry month. Never share your full card number or security code in a chat.",
    "Our warehouse ships orders Monday to Friday. Orders placed after 2 pm are dispatched the "
    "next working day. Express delivery is available in most regions for an extra fee, and "
    "orders over $75.00 ship free of charge within the continental United States.",
    "If a package is marked as delivered but cannot be found, customers should first check with "
    "neighbours and building reception, then wait 48 hours, since carriers sometimes scan parcels "
    "as delivered before the actual drop-off.",
    "Duplicate authorisations are common with hotel and car rental bookings. A pending "
    "authorisation is not a charge; it usually disappears from the account within seven days "
    "without any action from the customer or the merchant.",
    "The bank may ask the cardholder to sign a written statement confirming the details of the "
    "dispute. Cases without a signed statement are closed after 30 days. The cardholder is "
    "informed of every change of status by email.",
    "Chargeback fees of EUR 15.00 per case may be charged to the merchant account regardless of "
    "the outcome. Merchants with a dispute ratio above one percent are placed in a monitoring "
    "program and may lose the ability to accept cards.",
    "Customer satisfaction is important to us. After your case is closed, you may receive a short "
    "survey. Your answers help us improve the service and are never shared with third parties.",
    "Partial refunds are issued when an item is returned damaged or incomplete, or when shipping "
    "costs were not refundable under the terms of sale. The customer is told the reason for any "
    "deduction in writing.",
]


def long_case_file(rng: random.Random, f: dict) -> Doc:
    """A multi-paragraph case file (~300-600 words); facts spread over every paragraph."""
    d = Doc(f)
    opening = pick(rng, "Case file {case_id}\n\n", "Dispute case {case_id} - full history\n\n",
                   "Escalation summary for case {case_id}\n\n")
    p_customer = pick(
        rng,
        "Email from {customer_name}: Hello, I am writing about order {order_id}, which I placed with "
        "{merchant} on {order_date}. I paid with my {card_brand} ending in {card_last4}. The order was {a} "
        "{product}. Since then I have been trying to get this resolved and I am running out of patience. "
        "I would appreciate a quick answer.",
        "{customer_name} contacted us about an order from {merchant}. According to the customer, the "
        "{product} was ordered on {order_date} under order number {order_id}, and the payment was made "
        "with a card ending {card_last4}. The customer sounded frustrated and asked for the case to be "
        "handled as a priority.",
        "Customer {customer_name} opened this case regarding a purchase at {merchant}. The purchase, "
        "order {order_id} dated {order_date}, was for {a} {product}. The customer states the card used "
        "ends in {card_last4} and that this is the first time they have had a problem with this merchant.")
    p_payment = pick(
        rng,
        "Payment details: the card was charged {charged_amount} on {charge_date}. This total includes a "
        "shipping fee of {shipping_fee}. The customer also mentioned a separate purchase of "
        "{x_other_amount} from {x_other_merchant}, which is not part of this dispute.",
        "Our records show a charge of {charged_amount}, posted on {charge_date}, consisting of the item "
        "price of {item_price} and {shipping_fee} for shipping. An older order, {x_prev_order}, was "
        "checked as well and is not affected.",
        "The transaction of {charged_amount} cleared on {charge_date}. The customer's billing address is "
        "{billing_street}, {billing_city}. A second card on the account, ending {x_other_last4}, was "
        "not used for this purchase.")
    p_shipping = pick(
        rng,
        "Shipping: the order was sent to {recipient_name} at {shipping_street}, {shipping_city}, with "
        "{carrier}. Tracking number {tracking_number} shows the parcel as delivered on {delivery_date}. "
        "The billing address on file is in {billing_city}.",
        "The merchant confirmed that the {product} left the warehouse with {carrier} and was delivered "
        "on {delivery_date} to {shipping_city}. The tracking number is {tracking_number}. The customer "
        "says nobody at the delivery address received it.",
        "Delivery: {carrier} tracking {tracking_number}, status delivered, {delivery_date}. Recipient "
        "on the label: {recipient_name}, {shipping_city}. The card's billing city is {billing_city}, "
        "which is why the fraud check flagged the order.")
    p_chat = (
        "Chat excerpt:\n"
        + pick(rng, "{agent_name}: Thanks for waiting. I can see the order on my side.\n",
               "{agent_name}: Hello, I'm looking at your case now.\n")
        + pick(rng, "{customer_name}: I want the full amount back, not just part of it.\n",
               "{customer_name}: The parcel was never in my hands.\n")
        + pick(rng, "{agent_name}: I understand. I'll send you a return label.\n",
               "{agent_name}: I've escalated this to the disputes team.\n"))
    p_dispute = pick(
        rng,
        "On {dispute_date} the customer filed a dispute with {bank}, citing {reason}. The bank asked "
        "the merchant to respond by {respond_by}.",
        "{bank} opened a chargeback on {dispute_date}; the stated reason is {reason}. The merchant's "
        "response is due by {respond_by}.",
        "A formal dispute was raised on {dispute_date} through {bank} for {reason}. A response deadline of "
        "{respond_by} was set for the merchant.")
    p_resolution = pick(
        rng,
        "Resolution: after the item was returned with tracking number {return_tracking}, {merchant} "
        "issued a refund of {refund_amount} on {refund_date}. The shipping fee was not refunded. The case "
        "was closed by {agent_name}.",
        "Outcome: the merchant agreed to a partial refund. {refund_amount} was credited on {refund_date} "
        "to the replacement card ending {replacement_card_last4}, because the original card had been "
        "reissued. Handled by {agent_name}.",
        "Final update from {agent_name}: the refund of {refund_amount} was processed on {refund_date}. "
        "The return parcel, tracking {return_tracking}, reached the warehouse the same week. The "
        "customer's new card ends in {replacement_card_last4}.",
        "Closing note: {agent_name} confirmed with {merchant} that {refund_amount} was refunded on "
        "{refund_date}. The customer accepted this amount and agreed to withdraw the dispute with "
        "{bank}.")
    middle = [p_payment, p_shipping, p_dispute]
    rng.shuffle(middle)
    if rng.random() < 0.6:
        middle.insert(rng.randint(0, len(middle)), p_chat)
    fillers = rng.sample(FILLER, k=len(FILLER))
    paragraphs = [p_customer] + middle
    # insert filler paragraphs at random places until the text is long enough
    def n_words(ps):
        return sum(len(_PLACEHOLDER.sub("xxx", p).split()) for p in ps)
    target = rng.randint(280, 460)
    while n_words(paragraphs + [p_resolution]) < target and fillers:
        paragraphs.insert(rng.randint(1, len(paragraphs)), fillers.pop())
    paragraphs.append(p_resolution)
    if rng.random() < 0.35 and n_words(paragraphs) < 470:
        paragraphs.append(pick(rng, "This file was last updated by {agent_name}. Reference {case_id}.",
                               FILLER[10]))
    d.add(opening)
    for i, p in enumerate(paragraphs):
        d.add(p if i == 0 else "\n\n" + p)
    return d


# ------------------------------------------------------------------ examples


def _question(rng: random.Random, role: str, doc_kind: str, facts: dict, split: str):
    pool = (MERCHANT_QUESTIONS[role] if doc_kind == "bank_statement" and role in MERCHANT_QUESTIONS
            else QUESTIONS[role])
    if split == "train":
        pool = [q for q in pool if q not in HELDOUT_PHRASINGS]
    elif split == "heldout":
        pool = [q for q in pool if q in HELDOUT_PHRASINGS]
    template = rng.choice(pool)
    return template.replace("{merchant}", facts["merchant"]), template in HELDOUT_PHRASINGS


def generate(n: int, seed: int, *, split: str = "test", long_fraction: float = 0.15,
             unanswerable: float = 0.0) -> list[dict]:
    """Return ``n`` QA examples, deterministic in ``seed``.

    split: ``"train"`` never uses the held-out question phrasings; ``"test"`` uses all
    phrasings and flags the held-out ones in ``heldout_phrasing``; ``"heldout"`` asks
    only held-out phrasings (and only answerable questions).
    long_fraction: share of long (multi-paragraph, ~300-600 words) contexts.
    unanswerable: share of questions whose answer is not in the context (SQuAD 2.0 style,
    empty ``answers``).
    """
    if split not in ("train", "test", "heldout"):
        raise ValueError(f"split must be 'train', 'test' or 'heldout', got {split!r}")
    rng = random.Random(f"qa-dataset/{seed}")
    kinds = list(SHORT_DOCS)
    out = []
    while len(out) < n:
        facts = sample_case(rng)
        if rng.random() < long_fraction:
            kind, doc = "case_file", long_case_file(rng, facts)
        else:
            kind = rng.choice(kinds)
            doc = SHORT_DOCS[kind](rng, facts)
        context = doc.text()
        present = [r for r in ROLES if r in doc.spans and r not in doc.blocked]
        absent = [r for r in ROLES if r not in doc.spans
                  and not (CONFUSABLE.get(r, set()) & doc.spans.keys())]
        if split == "heldout":
            present = [r for r in present if r in HELDOUT_ROLES
                       and not (kind == "bank_statement" and r in MERCHANT_QUESTIONS)]
            absent = []
            if not present:
                continue
        if rng.random() < unanswerable and absent:
            role = rng.choice(absent)
            question, heldout = _question(rng, role, kind, facts, split)
            answers = {"text": [], "answer_start": []}
        else:
            role = rng.choices(present, weights=[ROLE_WEIGHT.get(r, 1.0) for r in present])[0]
            question, heldout = _question(rng, role, kind, facts, split)
            value = doc.facts[role]
            starts = sorted(doc.spans[role])
            answers = {"text": [value] * len(starts), "answer_start": starts}
        out.append({
            "id": f"{split}-s{seed}-{len(out):06d}",
            "title": kind,
            "question": question,
            "context": context,
            "answers": answers,
            "qtype": role,
            "heldout_phrasing": heldout,
        })
    return out


def check(example: dict) -> None:
    """Raise if an answer is not the exact substring at its answer_start."""
    ctx = example["context"]
    for text, start in zip(example["answers"]["text"], example["answers"]["answer_start"]):
        if ctx[start:start + len(text)] != text:
            raise AssertionError(f"{example['id']}: {text!r} not at {start}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of examples (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=["train", "test", "heldout"], default="test",
                    help="train: leave out the held-out question phrasings; heldout: ask only "
                         "those (default test: all phrasings)")
    ap.add_argument("--long-fraction", type=float, default=0.15,
                    help="share of long multi-paragraph contexts (default 0.15)")
    ap.add_argument("--unanswerable", type=float, default=0.0,
                    help="share of unanswerable questions (default 0)")
    ap.add_argument("--out", type=Path, default=None, help="JSONL file (default: stdout)")
    args = ap.parse_args(argv)
    data = generate(args.n, args.seed, split=args.split, long_fraction=args.long_fraction,
                    unanswerable=args.unanswerable)
    for ex in data:
        check(ex)
    lines = "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in data)
    if args.out is None:
        sys.stdout.write(lines)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(lines, encoding="utf-8")
        print(f"wrote {len(data)} examples to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
