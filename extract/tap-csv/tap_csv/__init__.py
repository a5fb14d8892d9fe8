"""Singer tap for the Northwind order_details CSV file."""
