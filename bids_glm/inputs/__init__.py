"""inputs layer of bids-glm."""
