"""The deployment's watchlist: FAISS index, encrypted vault, enrolment, lifecycle."""
