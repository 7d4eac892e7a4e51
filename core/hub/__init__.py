"""One message's work, from a raw event to its effects and its outcome.

``runtime`` holds the parts together and is what the actors call; ``pipeline`` transforms, checks and
delivers; ``policy`` decides ownership; ``router`` picks targets; ``ledger`` accounts each message's
outcome; ``refs`` keeps the ids one record has in every system; ``outbox`` is what the hub sends,
as a protocol the actors implement.
"""
