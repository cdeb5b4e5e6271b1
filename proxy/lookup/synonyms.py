"""Word lists the guard's alignment reads: the words that carry no content, the spellings that mean the
same word, and groups of words that mean the same thing in a question.

Two questions align when every content word of one is a content word of the other, after these lists
have made equal words equal ("update" / "change", "JS" / "JavaScript", "colour" / "color"). A word
missing from a list makes a paraphrase a miss (one upstream call), never a near miss a hit.
"""

# Words that shape a sentence, not what it asks about. Opposites among them (on/off, in/out, to/from)
# are the alternatives check's business; quantities (all, some, each) are content on purpose.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its itself i im ive id ill me my mine myself we our ours us you your yours
youre he him his she her they them their there here
is are was were be been being am do does did doing done have has had having
can could would should will shall may might must
how what which whats hows wheres whens whos where when why who whom whose
to of in on at by for with from into onto about as than then so if or and but also just between
please quick question tell explain know want help wondering wonder thanks hi hello hey ok
thing things way ways best good possible correct right proper exactly actually really supposed
some any get got getting gets make makes made making go going like let lets give keep keeps
something anything people someone somebody anyone one yet many much long while during rather instead another
out up down over off away back usually typically normally generally commonly
command trick tip tips advice method step steps option options
""".split())

# One spelling for words written several ways; the left side is what a question may say.
SPELLINGS = {
    "js": "javascript", "ts": "typescript", "py": "python", "nodejs": "node", "node.js": "node",
    "golang": "go", "postgres": "postgresql", "k8s": "kubernetes", "osx": "macos", "mac": "macos",
    "america": "usa", "uk": "britain", "2fa": "two-factor", "mfa": "two-factor",
    "tv": "television", "pc": "computer", "ui": "interface", "db": "database", "repo": "repository",
    "config": "configuration", "app": "application", "info": "information", "dict": "dictionary",
    "img": "image", "pic": "picture", "doc": "document", "docs": "documentation", "env": "environment",
    "admin": "administrator", "auth": "authentication", "e-mail": "email", "wifi": "wi-fi",
    "okay": "ok", "tyre": "tire", "grey": "gray", "mould": "mold", "oz": "ounce", "world": "earth",
    "fridge": "refrigerator",
}
# Words whose spelling depends on their case: "US" is a country, "us" a pronoun.
CASED_SPELLINGS = {"US": "usa"}
# Phrases that are one of the spellings above; matched before the words are split.
PHRASES = {
    "united states": "usa", "united kingdom": "britain", "great britain": "britain", "two factor": "two-factor",
    "multi-factor": "two-factor", "time zone": "timezone", "push up": "pushup", "e mail": "email",
    "log in": "login", "sign in": "login", "log on": "login", "log out": "logout", "sign out": "logout",
    "log off": "logout", "sign up": "signup", "set up": "setup",
    "turn on": "enable", "switch on": "enable", "turn off": "disable", "switch off": "disable",
    "how come": "why", "how much time": "how long", "how many minutes": "how long", "how many hours": "how long",
    "how many days": "how long", "how many weeks": "how long", "how many months": "how long",
    "how many years": "how long",
}

# Words that mean the same in a question; each group becomes its first word.
SYNONYM_GROUPS = """
change update modify edit switch alter adjust amend
delete remove erase rid eliminate
find locate search
see view check display list look
contact reach email call message
create generate produce build
picture photo image
phone mobile cellphone smartphone
big bigger biggest large larger largest huge
small smaller smallest little tiny
fast faster fastest quick quicker quickest quickly rapid
often frequently frequent
improve better enhance
increase raise boost
reduce lower decrease cut
undo revert
pair connect
hang mount
train teach
visit travel trip
speak spoken spoke talk
use used utilize
begin start
cancel terminate
fix repair solve resolve troubleshoot
error issue problem bug
buy purchase order
price cost charge fee
ship shipping deliver delivery
enable activate
disable deactivate
password passcode
login signin
logout signout
signup register registration
allow permit
send forward transfer
invoice receipt bill
far distance
tall taller tallest height high higher highest
old age
author wrote write writer
inventor invented invent
discoverer discovered discover
painter painted paint
symptom sign
wifi wi-fi internet
verify confirm
restore recover
hire employ
quit leave
choose pick select
combine merge join
need require required necessary
kid child children
car vehicle auto
movie film
couch sofa
substitute replacement replace alternative
baggage bag luggage
football soccer
calculate compute
lawyer attorney
deep depth
avoid prevent
autumn fall
desktop computer
bathtub tub
heal recovery
dispute contest challenge
install setup
day daily
week weekly
month monthly
year yearly annually annual
hour hourly
""".strip()

SYNONYMS: dict[str, str] = {
    word: group.split()[0] for group in SYNONYM_GROUPS.splitlines() for word in group.split()
}

# The asker, wherever they stand in a question: "can I claim my parents" / "can my parents claim me".
FIRST_PERSON = frozenset("i me myself im ive we us".split())

# Words between two others that make their order matter: "convert a string to an integer".
DIRECTIONAL = frozenset("to from into onto for than as over vs versus towards instead".split())
