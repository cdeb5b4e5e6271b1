"""Word lists the near-miss guard reads: negations, alternatives, number words, names it must know even
when typed in lower case (countries, cities, languages, months, days, chemical elements), and units."""

NEGATIONS = frozenset(
    "not no never nor none nobody nothing nowhere neither without unable cannot cant dont doesnt didnt isnt arent "
    "wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt neednt".split()
)

# Groups of alternatives: a question that says one never matches a stored one that says another
# (on/off; all/some; daily/weekly). Most are pairs of opposites.
ALTERNATIVES: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(side.split()) for side in sides) for sides in (
        ("on enable enabled enabling activate activated activating", "off disable disabled disabling deactivate "
         "deactivated deactivating"),
        ("start started starting begin beginning", "stop stopped stopping end ending finish"),
        ("open opened opening", "close closed closing shut"),
        ("show showing shown unhide", "hide hiding hidden"),
        ("mute muted", "unmute unmuted"),
        ("lock locked locking", "unlock unlocked unlocking"),
        ("install installed installing", "uninstall uninstalled uninstalling"),
        ("subscribe subscribed", "unsubscribe unsubscribed"),
        ("connect connected connecting", "disconnect disconnected disconnecting"),
        ("encrypt encrypted encryption", "decrypt decrypted decryption"),
        ("add added adding", "remove removed removing delete deleted deleting"),
        ("create created creating", "delete deleted deleting destroy"),
        ("allow allowed allowing accept accepted permit", "deny denied block blocked blocking reject rejected forbid"),
        ("include included including", "exclude excluded excluding"),
        ("increase increased increasing raise raising", "decrease decreased decreasing lower lowering reduce reducing"),
        ("upload uploaded uploading", "download downloaded downloading"),
        ("import imported importing", "export exported exporting"),
        ("buy bought buying purchase", "sell sold selling"),
        ("send sent sending", "receive received receiving"),
        ("push pushing", "pull pulling"),
        ("login log-in signin sign-in", "logout log-out signout sign-out"),
        ("before", "after"),
        ("above over", "below under"),
        ("inside", "outside"),
        ("input inputs", "output outputs"),
        ("max maximum largest biggest most highest", "min minimum smallest least lowest"),
        ("high higher", "low lower"),
        ("big bigger large larger", "small smaller little"),
        ("long longer", "short shorter"),
        ("heavy heavier", "light lighter"),
        ("full", "empty"),
        ("up upgrade", "down downgrade"),
        ("more", "less fewer"),
        ("best", "worst"),
        ("first earliest oldest", "last latest newest"),
        ("fast faster fastest quick quicker", "slow slower slowest"),
        ("cheap cheaper cheapest", "expensive"),
        ("hot hotter heat heating warm", "cold colder cool cooling"),
        ("boil boiling", "freeze freezing"),
        ("positive", "negative"),
        ("true", "false"),
        ("yes", "no"),
        ("win won winning", "lose lost losing"),
        ("profit profits", "loss losses"),
        ("credit", "debit"),
        ("income", "expense expenses"),
        ("ascending asc", "descending desc"),
        ("north northern", "south southern"),
        ("east eastern", "west western"),
        ("left", "right"),
        ("male men man", "female women woman"),
        ("day daytime", "night nighttime"),
        ("summer", "winter"),
        ("yesterday", "tomorrow"),
        ("past", "future"),
        ("sync synchronous", "async asynchronous"),
        ("public", "private"),
        ("internal", "external"),
        ("legal", "illegal"),
        ("valid", "invalid"),
        ("in", "out"),
        ("compress compressed compressing compression zip zipped", "decompress decompressed decompressing "
         "decompression unzip unzipped extract"),
        ("tighten tightening tight", "loosen loosening loose"),
        ("uppercase upper capitalize", "lowercase"),
        ("inhale inhaling", "exhale exhaling"),
        ("arrive arrives arriving arrival arrivals", "depart departs departing departure departures leave leaving"),
        ("borrow borrowing", "lend lending"),
        ("gain gaining", "lose losing"),
        ("cheaper", "pricier costlier dearer"),
        ("all every whole entire both", "some part partial selected certain few several any either", "most majority",
         "none"),
        ("only solely exclusively", "also too additionally"),
        ("always", "usually often generally normally typically", "sometimes occasionally", "rarely seldom", "ever"),
        ("each per individual", "total overall combined altogether"),
        ("hourly hour", "daily day", "weekly week", "monthly month", "yearly annually annual year", "lifetime"),
        ("who whom whose whos", "when", "where", "why"),
    )
)

# Questions that ask for one kind of answer, whichever way the rest is put: both ask it or neither.
QUESTION_WORDS = {"who": "who", "whom": "who", "whose": "who", "whos": "who"}
# "how old", "how long", ...: the word after "how", and the kind of answer it asks for.
HOW_QUESTIONS = {
    "old": "old", "long": "long", "many": "much", "much": "much", "far": "far", "often": "often",
    "frequently": "often", "big": "big", "large": "big", "tall": "tall", "high": "tall", "deep": "deep",
    "fast": "fast", "quickly": "fast", "soon": "soon", "early": "soon", "late": "late", "hot": "hot",
    "cold": "cold", "heavy": "heavy", "safe": "safe", "expensive": "much",
}
# Nouns that ask the same as a "how" question: "What is the height of Everest?" is "How tall is Everest?".
ATTRIBUTE_NOUNS = {
    "height": "tall", "distance": "far", "age": "old", "depth": "deep", "temperature": "hot", "duration": "long",
    "price": "much", "cost": "much", "population": "much", "weight": "heavy", "speed": "fast", "frequency": "often",
    "size": "big",
}

# "one" and "once" are left out: as often a pronoun or a conjunction ("which one", "once I ordered").
NUMBER_WORDS = {
    word: str(value) for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()) if word != "one"
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
     "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000", "dozen": "12",
     "half": "0.5", "quarter": "0.25", "twice": "2", "double": "2", "triple": "3"}

# Ordinals count as their number: "World War 2", "the Second World War", "World War II" agree. Not
# "first" ("first aid", "first time"): first/last is an alternative.
ORDINAL_WORDS = {word: str(n) for n, word in enumerate(
    "second third fourth fifth sixth seventh eighth ninth tenth".split(), start=2)}
# Not i, v or x: a pronoun, and letters people use ("the x axis").
ROMAN_NUMERALS = {"ii": "2", "iii": "3", "iv": "4", "vi": "6", "vii": "7", "viii": "8", "ix": "9"}

# Names a user may type in lower case; a capitalised word is taken as a name wherever it is.
NAMES = frozenset("""
afghanistan albania algeria argentina armenia australia austria azerbaijan bangladesh belarus belgium bolivia
bosnia brazil bulgaria cambodia cameroon canada chile china colombia croatia cuba cyprus czechia denmark
ecuador egypt england estonia ethiopia finland france georgia germany ghana greece guatemala hungary iceland
india indonesia iran iraq ireland israel italy jamaica japan jordan kazakhstan kenya korea kuwait latvia
lebanon libya lithuania luxembourg madagascar malaysia mali malta mexico moldova mongolia montenegro morocco
mozambique myanmar nepal netherlands holland nigeria norway pakistan panama paraguay peru philippines poland
portugal qatar romania russia rwanda scotland senegal serbia singapore slovakia slovenia somalia spain
sudan sweden switzerland syria taiwan tanzania thailand tunisia turkey uganda ukraine uruguay uzbekistan
venezuela vietnam wales yemen zambia zimbabwe usa uk uae america europe asia africa antarctica oceania
paris berlin london madrid rome lisbon dublin vienna prague warsaw budapest athens oslo stockholm helsinki
copenhagen amsterdam brussels bern zurich geneva moscow kyiv kiev istanbul ankara cairo nairobi lagos
tokyo osaka kyoto beijing shanghai seoul delhi mumbai bangalore karachi dhaka bangkok jakarta manila hanoi
sydney melbourne auckland toronto vancouver montreal ottawa chicago boston seattle houston dallas miami
denver atlanta austin phoenix york angeles francisco washington mexico lima bogota santiago caracas havana
english french german spanish italian portuguese dutch russian chinese mandarin cantonese japanese korean
arabic hindi bengali urdu turkish polish swedish norwegian danish finnish greek hebrew persian thai
vietnamese indonesian ukrainian czech hungarian romanian american british canadian australian mexican
indian brazilian european african asian
january february march april june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
mercury venus earth mars jupiter saturn uranus neptune pluto moon sun
python java javascript typescript rust golang kotlin swift ruby php perl scala haskell elixir erlang
clojure lua fortran cobol matlab julia bash powershell sql postgres postgresql mysql sqlite mongodb redis
kafka docker kubernetes linux windows macos ios android ubuntu debian fedora aws azure gcp react angular
vue django flask rails spring excel
hydrogen helium lithium carbon nitrogen oxygen fluorine neon sodium magnesium aluminum aluminium silicon
phosphorus sulfur chlorine argon potassium calcium iron copper zinc silver gold platinum lead tin nickel
uranium titanium cobalt
""".split())

# Units: a question that names none agrees with one that does ("how long" / "how many minutes"); two
# that name different ones, or the same ones in another order ("5 km to miles" / "5 miles to km"), do not.
UNITS = frozenset("""
usd eur euro euros dollar dollars pound pounds yen yuan rupee rupees franc francs bitcoin
km kilometer kilometers kilometre kilometres mile miles meter meters metre metres feet foot inch inches
cm mm kg kilogram kilograms gram grams lb lbs ounce ounces liter liters litre litres gallon gallons
celsius fahrenheit kelvin gb mb kb tb hour hours minute minutes seconds day days week weeks
month months year years
""".split())
