BEGIN TRANSACTION;
CREATE TABLE external_flags (
	id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	rater_id INTEGER NOT NULL, 
	external BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (image_id, rater_id), 
	FOREIGN KEY(image_id) REFERENCES images (id), 
	FOREIGN KEY(rater_id) REFERENCES persons (id)
);
INSERT INTO "external_flags" VALUES(1,1,2,0,'2026-12-03 07:34:19.315091','2026-12-03 07:34:19.315091');
CREATE TABLE images (
	id INTEGER NOT NULL, 
	public_id VARCHAR(16) NOT NULL, 
	condition VARCHAR(64) NOT NULL, 
	source_file VARCHAR(1024) NOT NULL, 
	prompt VARCHAR(1024), 
	seed INTEGER, 
	batch INTEGER, 
	sample_index INTEGER, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (public_id)
);
INSERT INTO "images" VALUES(1,'2a922b37b75bd9da','AC A','png8/00000_ACA.png','prompt AC A',0,0,0,32,32);
INSERT INTO "images" VALUES(2,'51dbc8b42b56700f','PC A','png8/00001_PCA.png','prompt PC A',1,0,1,32,32);
CREATE TABLE persons (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name, role), 
	CONSTRAINT known_role CHECK (role IN ('screener', 'rater', 'admin')), 
	UNIQUE (token_hash)
);
INSERT INTO "persons" VALUES(1,'sam','screener','c01b1efd433fae17ac015ed5b17435d4ae905dd813e4afcd82f5a130feb471db','2026-12-03 07:34:19.295644');
INSERT INTO "persons" VALUES(2,'ann','rater','d8536669c8b5a5bc5a544fcf2bb6deb95d1349e20f5b0e9e107f4f307791180f','2026-12-03 07:34:19.295652');
INSERT INTO "persons" VALUES(3,'admin','admin','6c15d2beb2493568bbda564710894c81c3e462b5d21f74a692d62ca2a9a51f78','2026-12-03 07:34:19.295653');
CREATE TABLE queue_entries (
	id INTEGER NOT NULL, 
	person_id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (person_id, image_id), 
	UNIQUE (person_id, position), 
	FOREIGN KEY(person_id) REFERENCES persons (id), 
	FOREIGN KEY(image_id) REFERENCES images (id)
);
INSERT INTO "queue_entries" VALUES(1,1,1,0);
INSERT INTO "queue_entries" VALUES(2,1,2,1);
INSERT INTO "queue_entries" VALUES(3,2,1,0);
INSERT INTO "queue_entries" VALUES(4,2,2,1);
CREATE TABLE ratings (
	id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	rater_id INTEGER NOT NULL, 
	segment VARCHAR(16) NOT NULL, 
	score VARCHAR(2) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (image_id, rater_id, segment), 
	CONSTRAINT known_segment CHECK (segment IN ('proximal', 'medium', 'peripheral')), 
	CONSTRAINT known_score CHECK (score IN ('1', '2', '3', '4', '5', 'NP', 'NA')), 
	FOREIGN KEY(image_id) REFERENCES images (id), 
	FOREIGN KEY(rater_id) REFERENCES persons (id)
);
INSERT INTO "ratings" VALUES(1,1,2,'proximal','4','2026-12-03 07:34:19.313765','2026-12-03 07:34:19.313765');
INSERT INTO "ratings" VALUES(2,1,2,'medium','3','2026-12-03 07:34:19.314571','2026-12-03 07:34:19.314571');
INSERT INTO "ratings" VALUES(3,1,2,'peripheral','NA','2026-12-03 07:34:19.314850','2026-12-03 07:34:19.314850');
CREATE TABLE screenings (
	id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	screener_id INTEGER NOT NULL, 
	keep BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (image_id), 
	FOREIGN KEY(image_id) REFERENCES images (id), 
	FOREIGN KEY(screener_id) REFERENCES persons (id)
);
INSERT INTO "screenings" VALUES(1,1,1,1,'2026-12-03 07:34:19.307275','2026-12-03 07:34:19.307275');
INSERT INTO "screenings" VALUES(2,2,1,1,'2026-12-03 07:34:19.309679','2026-12-03 07:34:19.309679');
COMMIT;
