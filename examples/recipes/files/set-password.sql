-- The postgres recipe's password, from psql's variable pw (quoted by psql: :'pw').
ALTER USER postgres PASSWORD :'pw';
