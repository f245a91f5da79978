"""The default evaluation set of the accuracy gate, used when ``--eval-texts`` is not given.

General English of the kinds these tasks meet: reviews and opinions, support
messages, news-like sentences with people, places, organisations, dates,
numbers, e-mail addresses and phone numbers, and short paragraphs with
questions for extractive QA. It is small and generic on purpose: it catches a
graph variant that breaks a model, not one that drifts on a domain. For a
gate that speaks for your traffic, pass your own texts with ``--eval-texts``.
"""

from __future__ import annotations

from typing import Dict, List

TEXTS: List[str] = [
    "I absolutely loved this movie, the acting was superb.",
    "The service was slow and the food arrived cold.",
    "Not bad at all, though the ending felt rushed.",
    "This is the worst purchase I have made this year.",
    "The hotel staff in Lisbon were friendly and helpful.",
    "My package never arrived and nobody answers the phone.",
    "Honestly, I expected more from a company like Microsoft.",
    "What a beautiful morning in Vancouver!",
    "The update broke my laptop's Wi-Fi again.",
    "I'm not sure how I feel about the new design.",
    "Great value for the price, would buy again.",
    "The concert was cancelled an hour before it started.",
    "She said the soup was fine, but she didn't finish it.",
    "Thanks for the quick reply, that solved my problem.",
    "Terrible customer support, I waited forty minutes on hold.",
    "The battery lasts two days, which is impressive.",
    "It's okay. Nothing special, nothing awful.",
    "I can't believe how rude the driver was.",
    "The museum in Florence was breathtaking.",
    "Why does this app crash every time I open the camera?",
    "The new season is even better than the first one.",
    "Meh.",
    "I love it!!!",
    "Never again. Never.",
    "The instructions were confusing but the product works.",
    "Our flight from Chicago to Denver was delayed by three hours.",
    "The kids had a wonderful time at the zoo.",
    "I would not recommend this restaurant to anyone.",
    "The price went up but the quality went down.",
    "Fantastic support from Anna at the help desk.",
    "Barack Obama was born in Honolulu, Hawaii, in 1961.",
    "Angela Merkel served as Chancellor of Germany from 2005 to 2021.",
    "Apple opened a new office in Austin, Texas, last spring.",
    "The United Nations headquarters is located in New York City.",
    "Marie Curie won the Nobel Prize in Physics in 1903.",
    "Toyota announced record profits on Tuesday.",
    "The Amazon River flows through Brazil, Peru and Colombia.",
    "Elon Musk said Tesla would build a factory near Berlin.",
    "Lionel Messi signed with Inter Miami in July 2023.",
    "The World Health Organization is based in Geneva.",
    "Dr. Priya Natarajan will speak at Stanford University on March 14.",
    "The European Central Bank raised interest rates by a quarter point.",
    "Serena Williams won 23 Grand Slam singles titles.",
    "Samsung and LG both showed new televisions at CES in Las Vegas.",
    "The Louvre in Paris welcomed nine million visitors last year.",
    "Jacinda Ardern was Prime Minister of New Zealand.",
    "The Golden Gate Bridge opened in San Francisco in 1937.",
    "Google DeepMind is headquartered in London.",
    "Mount Kilimanjaro is the highest mountain in Tanzania.",
    "The Boston Red Sox beat the New York Yankees 5 to 3.",
    "Please contact John Smith at john.smith@example.com for details.",
    "Call me on +1 415 555 0137 after 6 pm.",
    "My name is Maria Garcia and I live at 42 Elm Street, Springfield.",
    "Send the invoice to billing@acme-corp.com by Friday.",
    "Her phone number is 020 7946 0958 and her email is jane.doe@mail.co.uk.",
    "The patient, Robert Brown, born 12/04/1978, was admitted on Monday.",
    "Card number 4111 1111 1111 1111 expires 09/27.",
    "You can reach our office in Toronto at (416) 555-0199.",
    "Ship it to Kenji Tanaka, 3-1-1 Marunouchi, Tokyo 100-0005.",
    "Login from IP address 192.168.1.24 was blocked.",
    "My passport number is X1234567 and it expires in 2030.",
    "Mr. Ahmed Khan paid 250 euros by bank transfer on 3 May.",
    "Email sofia.rossi@unimi.it or call +39 02 1234 5678.",
    "The account belongs to Liam O'Connor from Dublin.",
    "Reset the password for user alex_m at alex.m@example.org.",
    "Dear Dr. Chen, your appointment is on June 2 at 10:30.",
    "Contact HR at hr@globex.com, extension 4421.",
    "Peter Novak moved from Prague to Vienna in 2019.",
    "Our CEO, Linda Park, will visit the Seoul plant next week.",
    "Her social security number was printed on the letter by mistake.",
    "The meeting with Carlos and Fatima moved to Thursday afternoon.",
    "Can you refund order 88231? It arrived broken.",
    "How do I change the delivery address on my account?",
    "The app keeps logging me out after the last update.",
    "I was charged twice for the same subscription.",
    "Where can I download last month's statement?",
    "The printer on the third floor is out of toner again.",
    "Is there a student discount for the annual plan?",
    "My order shows delivered but I never received it.",
    "The Wi-Fi password at the Berlin office changed yesterday.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The committee will publish its report in the autumn.",
    "Heavy rain is expected across Scotland this weekend.",
    "The library closes early on public holidays.",
    "Researchers at MIT developed a new battery material.",
    "The train to Edinburgh leaves from platform 4.",
    "Shares of Nvidia rose 4 percent in early trading.",
    "The bridge will be closed for repairs until October.",
    "A magnitude 6.1 earthquake struck off the coast of Chile.",
    "The city council approved the new bike lanes on Main Street.",
    "Café au lait with José Müller in Zürich, 東京 🌸!",
    "lol this is sooo good 😂😂",
    "cant wait 4 the weekend!!!",
    "ugh mondays... #tired",
    "@support why is my account locked??",
    "Best. Pizza. Ever.",
    "The quick brown fox jumps over the lazy dog.",
    "x",
    "It was the best of times, it was the worst of times.",
    "To be, or not to be, that is the question.",
]

_CONTEXTS: List[Dict[str, object]] = [
    {"context": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
                "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
                "from 1887 to 1889. It is 330 metres tall and was the tallest man-made structure in the world "
                "until the Chrysler Building in New York City was finished in 1930.",
     "questions": ["Where is the Eiffel Tower?", "Who is the tower named after?", "How tall is the Eiffel Tower?",
                   "When was the tower built?", "Which building became taller in 1930?"]},
    {"context": "Marie Curie was a Polish and naturalised-French physicist and chemist who conducted pioneering "
                "research on radioactivity. She was the first woman to win a Nobel Prize, the first person to "
                "win a Nobel Prize twice, and the only person to win it in two scientific fields. She was born "
                "in Warsaw in 1867 and died in 1934 in Passy, France.",
     "questions": ["What did Marie Curie research?", "Where was Marie Curie born?", "When did she die?",
                   "What was she the first woman to win?", "In what year was she born?"]},
    {"context": "Your order ORD-58213 was shipped on May 3 from our warehouse in Rotterdam. The parcel is "
                "handled by DHL and should arrive within three to five working days. If it has not arrived by "
                "May 12, please write to support@example.com and quote your order number.",
     "questions": ["When was the order shipped?", "Which company delivers the parcel?",
                   "Where is the warehouse?", "Whom should I write to?", "How long does delivery take?"]},
    {"context": "The Amazon rainforest covers much of the Amazon basin of South America. The basin spans about "
                "seven million square kilometres, of which five and a half million are covered by the forest. "
                "The majority of the forest is in Brazil, with 60 percent, followed by Peru with 13 percent "
                "and Colombia with 10 percent.",
     "questions": ["Where is the Amazon rainforest?", "How large is the Amazon basin?",
                   "Which country holds most of the forest?", "What share of the forest is in Peru?",
                   "How much of the basin is forest?"]},
    {"context": "Python is a high-level programming language created by Guido van Rossum and first released in "
                "1991. Its design philosophy emphasises code readability with the use of significant "
                "indentation. Python 3.0 was released in December 2008, and Python 2 reached its end of life "
                "on January 1, 2020.",
     "questions": ["Who created Python?", "When was Python first released?", "When was Python 3.0 released?",
                   "What does Python's design emphasise?", "When did Python 2 reach its end of life?"]},
    {"context": "The meeting of the board will take place on Thursday, 14 March, at 10:00 in room B204 of the "
                "Geneva office. Dr. Helen Morris will present the annual budget, and the vote on the new "
                "research centre in Lyon is scheduled for the afternoon session.",
     "questions": ["When is the board meeting?", "Where will the meeting take place?",
                   "Who will present the budget?", "What will be voted on?", "Which room is booked?"]},
    {"context": "Mount Everest, known in Nepali as Sagarmatha, is Earth's highest mountain above sea level, "
                "located in the Mahalangur Himal sub-range of the Himalayas. Its elevation of 8,849 metres was "
                "most recently established in 2020 by Chinese and Nepali authorities. Edmund Hillary and Tenzing "
                "Norgay made the first confirmed ascent in 1953.",
     "questions": ["What is the highest mountain on Earth?", "How high is Mount Everest?",
                   "Who first climbed Everest?", "When was the first ascent?", "What is Everest called in Nepali?"]},
    {"context": "The patient reported a persistent cough for two weeks and a mild fever. Dr. Alvarez prescribed "
                "a course of antibiotics for seven days and asked the patient to return on Friday for a "
                "follow-up. The chest X-ray taken on Monday showed no signs of pneumonia.",
     "questions": ["How long has the patient been coughing?", "What did the doctor prescribe?",
                   "When should the patient return?", "What did the X-ray show?", "Who prescribed the antibiotics?"]},
    {"context": "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 "
                "individual reefs and 900 islands stretching for over 2,300 kilometres. It is located in the "
                "Coral Sea, off the coast of Queensland, Australia, and can be seen from outer space.",
     "questions": ["What is the largest coral reef system?", "How many reefs does it have?",
                   "Where is the Great Barrier Reef?", "How long is the reef?", "How many islands are there?"]},
    {"context": "To reset your password, open the Settings page, choose Security and click Reset password. "
                "A link valid for 30 minutes will be sent to the e-mail address on your account. If you no "
                "longer have access to that address, call our help desk at +1 800 555 0100.",
     "questions": ["How do I reset my password?", "How long is the link valid?", "Where is the link sent?",
                   "What number should I call?", "Which page should I open first?"]},
    {"context": "Johann Sebastian Bach was a German composer and musician of the late Baroque period. He is "
                "known for the Brandenburg Concertos, the Goldberg Variations and the Mass in B minor. Bach "
                "was born in Eisenach in 1685 and spent the last 27 years of his life in Leipzig.",
     "questions": ["Who was Bach?", "Where was Bach born?", "When was Bach born?",
                   "Where did Bach spend his last years?", "Name a work by Bach."]},
    {"context": "The company reported revenue of 4.2 billion dollars for the third quarter, up 12 percent from a "
                "year earlier. Net income fell to 310 million dollars because of restructuring costs. The chief "
                "executive, Sandra Lee, said the firm would open 40 new stores in Asia next year.",
     "questions": ["What was the revenue in the third quarter?", "How much did revenue grow?",
                   "Why did net income fall?", "Who is the chief executive?", "How many new stores will open?"]},
    {"context": "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean "
                "Sea and is about 6,650 kilometres long. The river has two major tributaries: the White Nile, "
                "which rises in the Great Lakes region, and the Blue Nile, which begins at Lake Tana in Ethiopia.",
     "questions": ["Into which sea does the Nile flow?", "How long is the Nile?",
                   "Where does the Blue Nile begin?", "What are the two tributaries?", "Where does the White Nile rise?"]},
    {"context": "Tickets for the festival go on sale on 1 June at 9 am. A day pass costs 45 euros and a weekend "
                "pass costs 110 euros. Children under twelve enter free with an adult. The festival runs from "
                "18 to 20 July in Ghent's city park.",
     "questions": ["When do tickets go on sale?", "How much is a day pass?", "Who enters for free?",
                   "When does the festival run?", "Where is the festival held?"]},
    {"context": "The first iPhone was announced by Steve Jobs at the Macworld conference in San Francisco on "
                "January 9, 2007, and released in the United States on June 29, 2007. It combined a phone, a "
                "music player and an internet device, and it had a 3.5-inch touchscreen.",
     "questions": ["Who announced the first iPhone?", "Where was the iPhone announced?",
                   "When was the iPhone released?", "How large was its screen?", "What did the iPhone combine?"]},
    {"context": "Photosynthesis is the process by which green plants use sunlight to make food from carbon "
                "dioxide and water. It takes place mainly in the leaves, inside organelles called chloroplasts, "
                "which contain the green pigment chlorophyll. Oxygen is released as a by-product.",
     "questions": ["What do plants use to make food?", "Where does photosynthesis take place?",
                   "What pigment do chloroplasts contain?", "What is released as a by-product?",
                   "What are the inputs of photosynthesis?"]},
    {"context": "Our support team is available Monday to Friday from 8 am to 6 pm Central European Time. "
                "Requests sent at the weekend are answered on the next working day. Premium customers can "
                "use the 24-hour hotline listed in their contract.",
     "questions": ["When is the support team available?", "What happens to weekend requests?",
                   "Who can use the 24-hour hotline?", "Which time zone is used?", "Where is the hotline listed?"]},
    {"context": "The Treaty of Versailles was signed on 28 June 1919 in the Hall of Mirrors of the Palace of "
                "Versailles. It ended the state of war between Germany and the Allied Powers and required "
                "Germany to accept responsibility for causing the war.",
     "questions": ["When was the Treaty of Versailles signed?", "Where was it signed?",
                   "Which war did it end?", "What did Germany have to accept?", "Who were the parties?"]},
    {"context": "Lake Baikal in Siberia is the deepest lake in the world, with a maximum depth of 1,642 metres. "
                "It holds about 23 percent of the world's fresh surface water and is home to the Baikal seal, "
                "which lives nowhere else.",
     "questions": ["What is the deepest lake?", "How deep is Lake Baikal?", "Where is Lake Baikal?",
                   "How much fresh water does it hold?", "Which animal lives only there?"]},
    {"context": "The new library on Harbour Street opens on 5 September. It has 120,000 books, a children's "
                "wing on the ground floor and a café on the roof. Membership is free for residents of the city; "
                "others pay 20 pounds a year.",
     "questions": ["When does the library open?", "How many books does it have?",
                   "Where is the children's wing?", "How much do non-residents pay?", "What is on the roof?"]},
]

PAIRS: List[Dict[str, str]] = [
    {"question": str(q), "context": str(c["context"])} for c in _CONTEXTS for q in c["questions"]  # type: ignore[union-attr]
]
