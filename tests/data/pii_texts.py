"""Sixty short texts with (made-up) personal data, for PII token-classification tests.

Written for tritonize; every name, number and address is invented (phone numbers
use 555 / reserved ranges, domains are example.* or similar). They target the 17
entity types of the Rampart model: GIVEN_NAME, SURNAME, EMAIL, PHONE, URL,
TAX_ID, BANK_ACCOUNT, ROUTING_NUMBER, GOVERNMENT_ID, PASSPORT, DRIVERS_LICENSE,
BUILDING_NUMBER, STREET_NAME, SECONDARY_ADDRESS, CITY, STATE, ZIP_CODE.

Shapes covered: emails, support tickets, chat messages, web forms, log lines;
texts with no PII at all; several entities per text; entities glued to
punctuation; repeated entities; non-ASCII names; runs of spaces, tabs and
newlines. A few texts also carry data outside the model's label set (card
numbers, IBANs, IP addresses, dates of birth) as distractors.
"""

PII_TEXTS: list[str] = [
    # --- emails -------------------------------------------------------------
    "Hi Karen,\n\nPlease send the signed lease to michael.torres@example.com before Friday.\n\nThanks,\nMichael Torres",
    "Dear Mr. Okafor, your new account number is 4410 2289 3301 and the routing number is 026009593. "
    "Reply to billing@northbank-example.com with any questions.",
    "From: Priya Raman <priya.raman@example.org>\nTo: hr@example.org\nSubject: Address change\n\n"
    "Please update my home address to 2741 Maple Grove Road, Apt 12C, Columbus, OH 43215.",
    "Hello José Müller, we received your passport (no. C03004786) and will return it by registered mail.",
    "Hi team, Zoë Ångström will join on Monday. Her work phone is +1 (646) 555-0178 and her email is zoe.angstrom@example.net.",
    "Reminder: Dr. Amelia Chen's office moved to 950 Harbor Blvd, Suite 300, San Diego, CA 92101.",
    "Good morning,\nmy SSN on the form was wrong. The correct one is 219-09-9999. Regards, Daniel Wright",
    "Thanks for applying! We'll call you at 312-555-0147 to schedule the interview, Ms. Gonzalez.",
    "Hi Tom, the wire should go to account 000123456789, ABA routing 121000358, beneficiary Thomas Becker.",
    "Dear customer, no action is needed on your side. Your subscription renews automatically next month.",

    # --- support tickets ----------------------------------------------------
    "Ticket #48213: User Brandon Lee (brandon.lee@example.com) cannot log in since the password reset.",
    "Ticket #48214 - Caller: Fatima Al-Sayed, callback +44 20 7946 0321, issue: parcel sent to 18 Baker Street, London NW1 6XE not delivered.",
    "Customer says her driver's license number D4827-5519-0283 was rejected at checkout. Name on file: Olivia Novak.",
    "Priority: high\nReporter: Kenji Watanabe\nPhone: 415.555.0199\nDescription: invoice addressed to 77 Pine St, Floor 9, San Francisco, CA 94104 is missing the VAT line.",
    "Refund approved for order 99812. Send the check to Marcus Johnson, 1208 W Division St, Unit 3, Chicago, IL 60622.",
    "The printer on floor 3 keeps jamming; nobody's personal info involved, just fix the tray please.",
    "Escalation: the EIN 12-3456789 on the W-9 from Hartley & Sons does not match our records.",
    "User reports that https://portal.example-bank.com/accounts/7781 shows someone else's balance. Reporter: Grace O'Connor.",
    "Please verify identity: full name Ahmed Hassan, DOB 03/14/1985, SSN 078-05-1120, ZIP 30309.",
    "Agent note: spoke with Lars Øvergård (lars.overgard@example.no). He moved from Oslo to 5 Rue Lepic, 75018 Paris.",

    # --- chat messages ------------------------------------------------------
    "hey it's sam, text me at 555-212-0187 when you're outside",
    "lol ok, my email is jenny_k92@example.com, send the pics there!!",
    "Can you pick up Noah from 4512 Sunset Ave? He's with Mrs. Patel.",
    "My new address: 33 Queen St W, Toronto, ON M5H 2N2 (apt 1804, buzzer 1804).",
    "just landed in Denver, call me on +1 720 555 0143",
    "no worries, see you tomorrow at the usual place",
    "Ugh, I gave my passport number (K8812345) to some random website, is that bad?",
    "Zoë and Zoë's brother Luca Bianchi are both coming. Luca Bianchi says hi!",
    "ok so the routing # is 011000015 and acct # 9876543210, pls transfer the rent",
    "did you see Ethan's new site?? https://ethanbrooks.example.dev",

    # --- forms ----------------------------------------------------------------
    "First name: Hannah\nLast name: Schmidt\nEmail: hannah.schmidt@example.de\nPhone: +49 30 555 01234",
    "Name: Carlos Mendoza | Street: 1421 Elm Street | Apt: 2B | City: Austin | State: TX | ZIP: 78701",
    "Applicant: Mei Lin Wong; Passport No.: E12345678; Nationality: Singapore; Tel: +65 6555 0123",
    "Driver License #: S530-4621-7788 (Illinois)\nHolder: Robert Kowalski\nAddress: 909 Lake Shore Dr, Evanston, IL 60201",
    "Taxpayer ID (TIN): 98-7654321\nBusiness name: Blue Heron Bakery LLC\nContact: Julia Fernandes, julia@blueheron-example.com",
    "Bank: Example Credit Union\nRouting number: 322271627\nAccount number: 1234567890123\nAccount holder: Steven Park",
    "Emergency contact:   Maria   Rossi     (555) 010-9988\nRelationship: sister",
    "Shipping address:\n\n  12 Rosewood Lane\n  Unit 7\n  Portland, OR 97205\n\nBilling address: same as shipping",
    "Social Security Number: 123-45-6789\nDate of birth: 1990-07-22\nName: Jessica Nguyen",
    "Full name: Siobhán Ní Bhriain\nEmail: siobhan.nibhriain@example.ie\nMobile: +353 85 555 0142",

    # --- logs -----------------------------------------------------------------
    "2024-05-02T10:14:07Z INFO login ok user=anna.kowalczyk@example.pl ip=203.0.113.42",
    "2024-05-02T10:15:31Z WARN payment declined card=4111 1111 1111 1111 name=\"Peter Jansen\"",
    "[auth] failed login for user 'david.miller@example.com' from 198.51.100.7 (3 attempts)",
    "POST /api/v1/profile 200 body={\"name\":\"Laura Bianchi\",\"phone\":\"+39 02 5550 1234\",\"city\":\"Milan\"}",
    "2024-05-03 08:00:00 INFO scheduler started, 12 jobs queued, no errors",
    "ERROR export failed for customer_id=8812 (email=chris.evans@example.com, zip=10001)",
    "audit: record updated by admin; field ssn changed from ***-**-1234 to 521-44-8790 for employee Nadia Petrova",
    "GET https://shop.example.com/orders?email=tim.oneill%40example.com 302",
    "webhook payload: {\"iban\": \"DE89370400440532013000\", \"holder\": \"Klaus Fischer\"}",
    "DEBUG geo lookup: 1 Infinite Loop, Cupertino, CA 95014 -> lat 37.33, lon -122.03",

    # --- mixed / tricky -------------------------------------------------------
    "Contact: Aaliyah Brown,aaliyah.brown@example.com,(202) 555-0164,Washington,DC",
    "Please forward to Ms. Dubois—her number is 06 12 34 56 78 and she lives in Lyon.",
    "The meeting notes are attached. Action items: update the roadmap, review the budget, and book the room.",
    "Signed: William Turner (william.turner@example.com). Witness: William Turner Jr.",
    "Ship to: Björn Lindqvist, Drottninggatan 71, 111 36 Stockholm.",
    "Call 1-800-555-0199 (toll free) or email support@example.com; ask for Rachel.",
    "Mr. Li and Mrs. Li live at 88 Nathan Road, Flat 12A, Kowloon.",
    "Our office: 500 Fifth Avenue, 20th Floor, New York, NY 10110. Phone: 212-555-0123. Fax: 212-555-0124.",
    "Patient Jane Doe, MRN 00482913, passport 533380006, contact jane.doe@example.com or 617-555-0110.",
    "Hi!!! I'm Chloé Dubois-Martin :) my insta is @chloe.dm and my email is chloe.dm@example.fr",
]

assert len(PII_TEXTS) == 60, len(PII_TEXTS)
