"""Region proposal network: head, proposal generator, anchor labeler."""
