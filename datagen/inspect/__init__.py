"""Pictures for people: contact sheets, shard previews and the drawing helpers they share.
"""
